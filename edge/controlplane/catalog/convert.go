package catalog

import (
	"cmp"
	"slices"

	"github.com/hashicorp/consul/api"
)

// The functions of this file turn Consul's answers into the snapshot's
// types as soon as they arrive, so the state only ever holds normalized,
// sorted values and building a snapshot is a matter of copying.

// serviceFromEntries makes a Service from the answer of a Connect health
// query (every sidecar and native instance, whatever its health). A
// service without any Connect instance is not Connect-capable: ok is false.
func serviceFromEntries(name string, entries []*api.ServiceEntry) (svc Service, ok bool) {
	svc = Service{Name: name, Endpoints: []Endpoint{}}
	metas := make([]map[string]string, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		ok = true
		metas = append(metas, e.Service.Meta)
		if e.Checks.AggregatedStatus() != api.HealthPassing {
			continue
		}
		// A proxy without a port (or a native instance without one) has
		// no listener the ingress could reach.
		if ep, reachable := endpointOf(e); reachable {
			svc.Endpoints = append(svc.Endpoints, ep)
		}
	}
	slices.SortFunc(svc.Endpoints, compareEndpoints)
	svc.Meta = mergeMeta(metas)
	return svc, ok
}

func endpointOf(e *api.ServiceEntry) (Endpoint, bool) {
	addr := e.Service.Address
	node := ""
	if e.Node != nil {
		node = e.Node.Node
		if addr == "" {
			addr = e.Node.Address
		}
	}
	if addr == "" || e.Service.Port <= 0 {
		return Endpoint{}, false
	}
	instance := e.Service.ID
	if e.Service.Proxy != nil && e.Service.Proxy.DestinationServiceID != "" {
		instance = e.Service.Proxy.DestinationServiceID
	}
	return Endpoint{Address: addr, Port: e.Service.Port, InstanceID: node + "/" + instance}, true
}

func compareEndpoints(a, b Endpoint) int {
	return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port), cmp.Compare(a.InstanceID, b.InstanceID))
}

// mergeMeta merges the meta of a service's instances: per key, the value
// the most instances carry, ties going to the smallest value. The result
// does not depend on the order of the instances.
func mergeMeta(metas []map[string]string) map[string]string {
	votes := map[string]map[string]int{} // key -> value -> instances
	for _, m := range metas {
		for k, v := range m {
			if votes[k] == nil {
				votes[k] = map[string]int{}
			}
			votes[k][v]++
		}
	}
	if len(votes) == 0 {
		return nil
	}
	merged := make(map[string]string, len(votes))
	for k, values := range votes {
		best, bestVotes := "", 0
		for v, n := range values {
			if n > bestVotes || (n == bestVotes && v < best) {
				best, bestVotes = v, n
			}
		}
		merged[k] = best
	}
	return merged
}

// identityFromRoots gives the trust domain and the roots, active first and
// then by ID.
func identityFromRoots(list *api.CARootList) (trustDomain string, rootsPEM []string) {
	if list == nil {
		return "", []string{}
	}
	roots := make([]*api.CARoot, 0, len(list.Roots))
	for _, r := range list.Roots {
		if r != nil {
			roots = append(roots, r)
		}
	}
	slices.SortFunc(roots, func(a, b *api.CARoot) int {
		if a.Active != b.Active {
			if a.Active {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.ID, b.ID)
	})
	rootsPEM = make([]string, 0, len(roots))
	for _, r := range roots {
		rootsPEM = append(rootsPEM, r.RootCertPEM)
	}
	return list.TrustDomain, rootsPEM
}

func leafFromCert(c *api.LeafCert) Leaf {
	if c == nil {
		return Leaf{}
	}
	return Leaf{
		CertPEM:     c.CertPEM,
		KeyPEM:      c.PrivateKeyPEM,
		ValidBefore: c.ValidBefore.UTC(),
		SpiffeID:    c.ServiceURI,
	}
}

func configFromPair(p *api.KVPair) ConfigDoc {
	if p == nil {
		return ConfigDoc{}
	}
	// Never nil when present, so an empty value hashes the same however
	// the client decoded it.
	return ConfigDoc{Present: true, Value: append([]byte{}, p.Value...), ModifyIndex: p.ModifyIndex}
}
