package apidocs_test

import (
	"cmp"
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

func TestMain(m *testing.M) { os.Exit(localenvtest.Run(m, localenvtest.Consul)) }

// ConsulCatalog is a blocking query on the real catalog: the services
// that announce a document, sorted, sidecars and services without one
// left out; an unchanged catalog blocks, a registration answers.
func TestConsulCatalogSources(t *testing.T) {
	client := localenvtest.ConsulClient(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	zeta, alpha, plain := "zeta-"+suffix, "alpha-"+suffix, "plain-"+suffix
	registerService(t, client, zeta, map[string]string{apidocs.MetaKey: "/z.json"}, true)
	registerService(t, client, alpha, map[string]string{apidocs.MetaKey: "/a.json"}, false)
	registerService(t, client, plain, nil, false)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	catalog := apidocs.ConsulCatalog{Client: client}
	sources, meta, err := catalog.Sources((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	var ours []apidocs.Source
	for _, s := range sources {
		if s.Service == zeta || s.Service == alpha || s.Service == plain || s.Service == zeta+"-sidecar-proxy" {
			ours = append(ours, s)
		}
	}
	want := []apidocs.Source{{Service: alpha, Path: "/a.json"}, {Service: zeta, Path: "/z.json"}}
	if !slices.Equal(ours, want) {
		t.Errorf("sources %+v, want %+v", ours, want)
	}
	if !slices.IsSortedFunc(sources, func(a, b apidocs.Source) int { return cmp.Compare(a.Service, b.Service) }) {
		t.Errorf("sources are not sorted by service: %+v", sources)
	}
	if meta == nil || meta.LastIndex == 0 {
		t.Fatalf("no index to block on: %+v", meta)
	}

	// Nothing changes: the query waits and answers with the same index.
	_, same, err := catalog.Sources((&api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 200 * time.Millisecond}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if same.LastIndex != meta.LastIndex {
		t.Skipf("the shared agent's catalog changed meanwhile (index %d → %d)", meta.LastIndex, same.LastIndex)
	}

	// A registration ends the wait with a higher index and the new source.
	beta := "beta-" + suffix
	registered := make(chan struct{})
	go func() {
		defer close(registered)
		registerService(t, client, beta, map[string]string{apidocs.MetaKey: "/b.json"}, false)
	}()
	sources, moved, err := catalog.Sources((&api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute}).WithContext(ctx))
	<-registered
	if err != nil {
		t.Fatal(err)
	}
	if moved.LastIndex <= meta.LastIndex {
		t.Errorf("index %d after a registration, want above %d", moved.LastIndex, meta.LastIndex)
	}
	if !slices.Contains(sources, apidocs.Source{Service: beta, Path: "/b.json"}) {
		t.Errorf("the registered service is missing from %+v", sources)
	}
}

// registerService registers a service on the agent, with a sidecar if
// asked, and removes it when the test ends.
func registerService(t *testing.T, client *api.Client, name string, meta map[string]string, sidecar bool) {
	t.Helper()
	reg := &api.AgentServiceRegistration{ID: name, Name: name, Address: "127.0.0.1", Port: 9, Meta: meta}
	if sidecar {
		reg.Connect = &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{Meta: meta}}
	}
	if err := client.Agent().ServiceRegister(reg); err != nil {
		t.Errorf("register %s: %v", name, err)
		return
	}
	t.Cleanup(func() { _ = client.Agent().ServiceDeregister(name) })
}
