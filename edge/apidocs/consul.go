package apidocs

import (
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/consul/api"
)

// MetaKey is the service meta key whose value is the path of a service's
// OpenAPI document.
const MetaKey = "openapi"

// ConsulCatalog finds documents in the Consul catalog.
type ConsulCatalog struct {
	Client *api.Client
}

// Sources runs a blocking query on the catalog's service list and reads
// the meta of each service's instances. Sidecar proxies are skipped. The
// index is the service list's: it moves with every registration change.
func (c ConsulCatalog) Sources(q *api.QueryOptions) ([]Source, *api.QueryMeta, error) {
	names, meta, err := c.Client.Catalog().Services(q)
	if err != nil {
		return nil, nil, fmt.Errorf("consul catalog services: %w", err)
	}
	var sources []Source
	for _, name := range slices.Sorted(maps.Keys(names)) {
		// Not blocking: only the list above waits for a change.
		entries, _, err := c.Client.Catalog().Service(name, "", (&api.QueryOptions{}).WithContext(q.Context()))
		if err != nil {
			return nil, nil, fmt.Errorf("consul catalog service %s: %w", name, err)
		}
		for _, e := range entries {
			if e.ServiceProxy != nil && e.ServiceProxy.DestinationServiceName != "" {
				continue // a sidecar proxy, registered under its own name
			}
			if path := e.ServiceMeta[MetaKey]; path != "" {
				sources = append(sources, Source{Service: name, Path: path})
				break
			}
		}
	}
	return sources, meta, nil
}
