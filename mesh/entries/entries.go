// Package entries holds Portico's Consul mesh configuration: the config
// entry files in this directory (proxy-defaults, service-defaults,
// service-resolvers and service-intentions), embedded so that the dev stack
// and the tests apply exactly what operators apply with
//
//	for f in mesh/entries/*.json; do consul config write "$f"; done
//
// The sidecars trace through proxy-defaults: Envoy's OpenTelemetry tracer
// (envoy_tracing_json) sends spans to the static cluster portico-otlp
// (envoy_extra_static_clusters_json), at 127.0.0.1:4317 in the file, the
// conventional place of a node-local OTLP collector. A deployment whose
// collector is elsewhere passes TracingCollector to Apply, which rewrites
// that one address; the file stays the one source.
//
// Files are applied in name order. The order matters: Consul rejects L7
// intentions (HTTP methods) on a service whose protocol is not yet http,
// so defaults (0x, 1x) come before resolvers (2x) and intentions (3x).
package entries

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"sort"
	"strconv"

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

// CollectorCluster is the sidecars' static cluster of the OTLP/gRPC
// collector, named in proxy-defaults.
const CollectorCluster = "portico-otlp"

// Option adapts the entries to a deployment before Apply writes them.
type Option func([]Entry) error

// TracingCollector points the sidecars' tracer at the OTLP/gRPC collector
// addr (host:port) instead of the file's 127.0.0.1:4317.
func TracingCollector(addr string) Option {
	return func(list []Entry) error {
		host, portText, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("tracing collector: %w", err)
		}
		port, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || port == 0 || host == "" {
			return fmt.Errorf("tracing collector %q: want host:port", addr)
		}
		for _, e := range list {
			pd, ok := e.Entry.(*api.ProxyConfigEntry)
			if !ok {
				continue
			}
			raw, _ := pd.Config[staticClustersKey].(string)
			if raw == "" {
				return fmt.Errorf("mesh entry %s: no %s to point at the collector", e.File, staticClustersKey)
			}
			rewritten, err := setCollectorAddress(raw, host, port)
			if err != nil {
				return fmt.Errorf("mesh entry %s: %w", e.File, err)
			}
			pd.Config[staticClustersKey] = rewritten
			return nil
		}
		return errors.New("tracing collector: no proxy-defaults entry")
	}
}

const staticClustersKey = "envoy_extra_static_clusters_json"

// setCollectorAddress sets the one endpoint of the collector cluster in a
// static cluster definition (Envoy's JSON, as proxy-defaults holds it),
// leaving every other field as it is.
func setCollectorAddress(clusterJSON, host string, port uint64) (string, error) {
	var cluster map[string]any
	if err := json.Unmarshal([]byte(clusterJSON), &cluster); err != nil {
		return "", fmt.Errorf("%s: %w", staticClustersKey, err)
	}
	if cluster["name"] != CollectorCluster {
		return "", fmt.Errorf("%s: want the one cluster %s", staticClustersKey, CollectorCluster)
	}
	// loadAssignment.endpoints[0].lbEndpoints[0].endpoint.address.socketAddress
	var node any = cluster
	for _, step := range []any{"loadAssignment", "endpoints", 0, "lbEndpoints", 0, "endpoint", "address", "socketAddress"} {
		switch key := step.(type) {
		case string:
			m, _ := node.(map[string]any)
			node = m[key]
		case int:
			list, _ := node.([]any)
			if len(list) != 1 {
				return "", fmt.Errorf("%s: want one endpoint in %s", staticClustersKey, CollectorCluster)
			}
			node = list[0]
		}
	}
	sock, ok := node.(map[string]any)
	if !ok {
		return "", fmt.Errorf("%s: %s has no socketAddress", staticClustersKey, CollectorCluster)
	}
	sock["address"], sock["portValue"] = host, port
	out, err := json.Marshal(cluster)
	return string(out), err
}

// Apply writes every entry to Consul, in order, replacing entries of the
// same kind and name, after opts adapted them. Applying twice changes
// nothing.
func Apply(ctx context.Context, client *api.Client, opts ...Option) error {
	list, err := Load()
	if err != nil {
		return err
	}
	for _, opt := range opts {
		if err := opt(list); err != nil {
			return err
		}
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
