package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/identity"
	"github.com/portico-mesh/portico/services/platform/registry"
)

// register keeps a service registered, with its sidecar, the way the
// services register themselves, until the returned stop is called.
func register(t *testing.T, name, addr string) (stop func()) {
	t.Helper()
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portText)
	reg, err := registry.New(registry.Config{
		ConsulAddr: localenvtest.ConsulAddr(t), Name: name, Address: "127.0.0.1", Port: port,
		OpenAPIPath: "/openapi.json", Log: testLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { reg.Run(ctx) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if err := reg.Deregister(context.Background()); err != nil {
				t.Errorf("deregister %s: %v", name, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// The edge finds the documents in the catalog, refreshes the merged
// document when the catalog changes, and registers itself.
func TestDocumentationFollowsTheCatalog(t *testing.T) {
	exchange := newExchange()
	productsAddr := startProducts(t, exchange, time.Minute)
	usersAddr := startUsers(t, exchange)
	register(t, "products", productsAddr)
	stopUsers := register(t, "users", usersAddr)

	cfg := edgeConfig(t, exchange, "products="+productsAddr+",users="+usersAddr)
	cfg.Consul.ConsulHTTPAddr = localenvtest.ConsulAddr(t)
	cfg.Consul.CheckInterval = time.Second
	cfg.Consul.DeregisterAfter = time.Minute
	edge := startEdge(t, cfg)

	document := func() string {
		r, err := call(http.MethodGet, edge.url+"/openapi.json", "", identity.Identity{}, "")
		if err != nil || r.status != http.StatusOK {
			return ""
		}
		return string(r.body)
	}
	waitFor(t, 30*time.Second, "both services in the merged document", func() bool {
		doc := document()
		return strings.Contains(doc, `"/api/users/login"`) && strings.Contains(doc, `"/api/products/products"`)
	})
	if err := apidocs.Validate([]byte(document())); err != nil {
		t.Fatal(err)
	}

	stopUsers()
	waitFor(t, 30*time.Second, "users to leave the merged document", func() bool {
		doc := document()
		return doc != "" && !strings.Contains(doc, `"/api/users/login"`) && strings.Contains(doc, `"/api/products/products"`)
	})

	// The edge registered itself, without an API document of its own.
	entries, _, err := localenvtest.ConsulClient(t).Catalog().Service("edge", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].ServiceMeta[apidocs.MetaKey] != "" {
		t.Fatalf("edge in the catalog: %+v", entries)
	}
}
