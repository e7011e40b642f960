// Package entries holds Portico's Consul mesh configuration: the config
// entry files in this directory (proxy-defaults, service-defaults,
// service-resolvers and service-intentions), embedded so that the dev stack
// and the tests apply exactly what operators apply with
//
//	for f in mesh/entries/*.json; do consul config write "$f"; done
//
// Files are applied in name order. The order matters: Consul rejects L7
// intentions (HTTP methods) on a service whose protocol is not yet http,
// so defaults (0x, 1x) come before resolvers (2x) and intentions (3x).
package entries

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"

	"github.com/hashicorp/consul/api"
)

//go:embed *.json
var files embed.FS

// Entry is one config entry with the file it came from.
type Entry struct {
	File  string
	Entry api.ConfigEntry
}

// Load decodes every entry file, in application order.
func Load() ([]Entry, error) {
	names, err := fs.Glob(files, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]Entry, 0, len(names))
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		e, err := api.DecodeConfigEntryFromJSON(b)
		if err != nil {
			return nil, fmt.Errorf("mesh entry %s: %w", name, err)
		}
		out = append(out, Entry{File: name, Entry: e})
	}
	return out, nil
}

// Apply writes every entry to Consul, in order, replacing entries of the
// same kind and name. Applying twice changes nothing.
func Apply(ctx context.Context, client *api.Client) error {
	list, err := Load()
	if err != nil {
		return err
	}
	w := (&api.WriteOptions{}).WithContext(ctx)
	for _, e := range list {
		ok, _, err := client.ConfigEntries().Set(e.Entry, w)
		if err != nil {
			return fmt.Errorf("write mesh entry %s (%s %s): %w", e.File, e.Entry.GetKind(), e.Entry.GetName(), err)
		}
		if !ok {
			return fmt.Errorf("write mesh entry %s: consul did not apply it", e.File)
		}
	}
	return nil
}
