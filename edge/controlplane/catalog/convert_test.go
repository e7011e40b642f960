package catalog

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
)

// entry is a Connect health answer's entry: a sidecar of instance on node,
// with the given check statuses.
func entry(node, nodeAddr, instance, addr string, port int, meta map[string]string, statuses ...string) *api.ServiceEntry {
	checks := api.HealthChecks{{Node: node, CheckID: "serfHealth", Status: api.HealthPassing}}
	for i, s := range statuses {
		checks = append(checks, &api.HealthCheck{Node: node, CheckID: instance + "-check-" + string(rune('a'+i)), Status: s})
	}
	return &api.ServiceEntry{
		Node: &api.Node{Node: node, Address: nodeAddr},
		Service: &api.AgentService{
			Kind:    api.ServiceKindConnectProxy,
			ID:      instance + "-sidecar-proxy",
			Service: "products-sidecar-proxy",
			Address: addr,
			Port:    port,
			Meta:    meta,
			Proxy:   &api.AgentServiceConnectProxyConfig{DestinationServiceName: "products", DestinationServiceID: instance},
		},
		Checks: checks,
	}
}

func TestServiceFromEntries(t *testing.T) {
	entries := []*api.ServiceEntry{
		entry("n2", "10.0.0.2", "products-3", "10.0.0.20", 21000, map[string]string{"version": "2"}, api.HealthPassing),
		entry("n1", "10.0.0.1", "products-1", "", 21001, map[string]string{"version": "1", "openapi": "/openapi.yaml"}, api.HealthPassing),
		entry("n1", "10.0.0.1", "products-2", "", 21000, map[string]string{"version": "2"}, api.HealthPassing, api.HealthPassing),
		entry("n3", "10.0.0.3", "products-4", "10.0.0.3", 21000, map[string]string{"version": "1"}, api.HealthCritical),
		entry("n3", "10.0.0.3", "products-5", "10.0.0.3", 21001, nil, api.HealthWarning),
		entry("n3", "10.0.0.3", "products-6", "10.0.0.3", 21002, nil, api.HealthMaint),
		entry("n4", "10.0.0.9", "products-7", "10.0.0.9", 0, nil, api.HealthPassing), // no port
	}
	got, ok := serviceFromEntries("products", entries)
	if !ok {
		t.Fatal("a service with sidecars is not reported as Connect-capable")
	}
	want := Service{
		Name: "products",
		// "version": "1" and "2" have two instances each; the smaller wins.
		Meta: map[string]string{"version": "1", "openapi": "/openapi.yaml"},
		Endpoints: []Endpoint{
			{Address: "10.0.0.1", Port: 21000, InstanceID: "n1/products-2"}, // node address fallback
			{Address: "10.0.0.1", Port: 21001, InstanceID: "n1/products-1"},
			{Address: "10.0.0.20", Port: 21000, InstanceID: "n2/products-3"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("service (-want +got):\n%s", diff)
	}

	// The answer's order does not matter.
	reversed := slices.Clone(entries)
	slices.Reverse(reversed)
	again, _ := serviceFromEntries("products", reversed)
	if diff := cmp.Diff(got, again); diff != "" {
		t.Errorf("another order gives another service (-first +second):\n%s", diff)
	}
}

func TestServiceFromEntriesNoneHealthy(t *testing.T) {
	got, ok := serviceFromEntries("products", []*api.ServiceEntry{
		entry("n1", "10.0.0.1", "products-1", "", 21000, nil, api.HealthCritical),
	})
	if !ok {
		t.Fatal("a service whose sidecars all fail is still Connect-capable")
	}
	if got.Endpoints == nil || len(got.Endpoints) != 0 {
		t.Errorf("endpoints = %#v, want empty and not nil", got.Endpoints)
	}
}

func TestServiceFromEntriesNotConnect(t *testing.T) {
	if _, ok := serviceFromEntries("legacy", nil); ok {
		t.Error("a service without Connect instances is reported as Connect-capable")
	}
}

func TestServiceFromEntriesNative(t *testing.T) {
	native := &api.ServiceEntry{
		Node:    &api.Node{Node: "n1", Address: "10.0.0.1"},
		Service: &api.AgentService{ID: "billing-1", Service: "billing", Port: 8443, Connect: &api.AgentServiceConnect{Native: true}},
		Checks:  api.HealthChecks{{Status: api.HealthPassing}},
	}
	got, ok := serviceFromEntries("billing", []*api.ServiceEntry{native})
	want := []Endpoint{{Address: "10.0.0.1", Port: 8443, InstanceID: "n1/billing-1"}}
	if !ok || !slices.Equal(got.Endpoints, want) {
		t.Errorf("native service = %+v (connect %v), want endpoints %+v", got, ok, want)
	}
}

func TestMergeMeta(t *testing.T) {
	tests := []struct {
		name  string
		metas []map[string]string
		want  map[string]string
	}{
		{"none", nil, nil},
		{"empty maps", []map[string]string{{}, nil}, nil},
		{"majority wins", []map[string]string{{"v": "2"}, {"v": "1"}, {"v": "2"}}, map[string]string{"v": "2"}},
		{"tie goes to the smallest", []map[string]string{{"v": "b"}, {"v": "a"}}, map[string]string{"v": "a"}},
		{"keys from any instance", []map[string]string{{"a": "1"}, {"b": "2"}}, map[string]string{"a": "1", "b": "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeMeta(tt.metas)
			if !maps.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("mergeMeta = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIdentityFromRoots(t *testing.T) {
	td, roots := identityFromRoots(&api.CARootList{
		TrustDomain:  "11111111-2222.consul",
		ActiveRootID: "b",
		Roots: []*api.CARoot{
			{ID: "c", RootCertPEM: "C"},
			{ID: "b", RootCertPEM: "B", Active: true},
			nil,
			{ID: "a", RootCertPEM: "A"},
		},
	})
	if td != "11111111-2222.consul" {
		t.Errorf("trust domain = %q", td)
	}
	if want := []string{"B", "A", "C"}; !slices.Equal(roots, want) {
		t.Errorf("roots = %v, want %v (active first, then by ID)", roots, want)
	}
	if _, roots := identityFromRoots(nil); roots == nil || len(roots) != 0 {
		t.Errorf("roots of nothing = %#v, want empty and not nil (fetched)", roots)
	}
}

func TestLeafFromCert(t *testing.T) {
	est := time.FixedZone("EST", -5*3600)
	got := leafFromCert(&api.LeafCert{
		CertPEM: "CERT", PrivateKeyPEM: "KEY", ServiceURI: "spiffe://td/ns/default/dc/dc1/svc/ingress",
		ValidBefore: time.Date(2026, 11, 28, 7, 0, 0, 0, est),
	})
	want := Leaf{CertPEM: "CERT", KeyPEM: "KEY", SpiffeID: "spiffe://td/ns/default/dc/dc1/svc/ingress", ValidBefore: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	if got != want {
		t.Errorf("leaf = %+v, want %+v", got, want)
	}
}

func TestConfigFromPair(t *testing.T) {
	if got := configFromPair(nil); got.Present || got.Value != nil {
		t.Errorf("absent key = %+v", got)
	}
	value := []byte("version: 1")
	got := configFromPair(&api.KVPair{Key: "k", Value: value, ModifyIndex: 42})
	if !got.Present || string(got.Value) != "version: 1" || got.ModifyIndex != 42 {
		t.Errorf("present key = %+v", got)
	}
	value[0] = 'X'
	if string(got.Value) != "version: 1" {
		t.Error("the document shares its bytes with the client's answer")
	}
	if empty := configFromPair(&api.KVPair{Key: "k"}); empty.Value == nil {
		t.Error("an empty present value is nil, hashing unlike an empty slice")
	}
}
