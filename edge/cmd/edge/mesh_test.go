package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/mesh/entries"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/registry"
)

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// In the mesh the edge reaches a service only through its own sidecar:
// the upstream listener EDGE_UPSTREAMS names is created by the edge's
// registration, and the intentions (the real entries, default deny) let
// the edge read products and nothing else.
func TestEdgeReachesServicesThroughItsSidecar(t *testing.T) {
	consul := localenvtest.StartConsul(t)
	client, err := consul.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := entries.Apply(ctx, client); err != nil {
		t.Fatalf("mesh entries: %v", err)
	}

	exchange := newExchange()
	productsAddr := startProducts(t, exchange, time.Minute)
	_, portText, _ := net.SplitHostPort(productsAddr)
	productsPort, _ := strconv.Atoi(portText)
	reg, err := registry.New(registry.Config{
		ConsulAddr: consul.HTTPAddr(), Name: "products", ID: "products-mesh-test",
		Address: "127.0.0.1", Port: productsPort, SidecarPort: freePort(t),
		OpenAPIPath: "/openapi.json", CheckInterval: time.Second, Log: testLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	regCtx, stopReg := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { reg.Run(regCtx) })
	t.Cleanup(func() { stopReg(); wg.Wait() })
	waitFor(t, 30*time.Second, "products to register", func() bool {
		svc, _, err := client.Agent().Service("products-mesh-test", nil)
		return err == nil && svc != nil
	})
	startSidecar(t, consul, "products-mesh-test")

	upstreamPort := freePort(t)
	cfg := edgeConfig(t, exchange, "products=127.0.0.1:"+strconv.Itoa(upstreamPort))
	cfg.Consul.ConsulHTTPAddr = consul.HTTPAddr()
	cfg.Consul.ServiceID = "edge-mesh-test"
	cfg.Consul.SidecarPort = freePort(t)
	cfg.Consul.CheckInterval = time.Second
	cfg.Consul.DrainDelay = 0
	edge := startEdge(t, cfg)
	waitFor(t, 30*time.Second, "the edge to register", func() bool {
		svc, _, err := client.Agent().Service("edge-mesh-test", nil)
		return err == nil && svc != nil
	})
	startSidecar(t, consul, "edge-mesh-test")

	p := createProduct(t, "http://"+productsAddr, "Mesh")
	item := edge.url + productPath(p.ID)
	// The sidecars need a moment for certificates and endpoints.
	var first reply
	waitFor(t, 60*time.Second, "a read through the edge's sidecar", func() bool {
		r, err := call(http.MethodGet, item, "products", alice, "")
		first = r
		return err == nil && r.status == http.StatusOK
	})
	if x := first.xcache(); x != httpcache.Miss {
		t.Errorf("first read through the mesh: X-Cache %s", x)
	}
	waitFor(t, 10*time.Second, "a hit", func() bool {
		return mustCall(t, 200, http.MethodGet, item, "products", bob, "").xcache() == httpcache.Hit
	})
	// Writes are not the edge's: the intentions refuse them at the
	// products sidecar, and the edge passes the refusal on.
	r := mustCall(t, http.StatusForbidden, http.MethodPut, item, "products", alice, `{"name": "x"}`)
	expectCache(t, "write through the edge", r, httpcache.Bypass)
}

func startSidecar(t *testing.T, consul *localenv.Consul, serviceID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := localenv.StartSidecar(ctx, localenv.SidecarOptions{Consul: consul, SidecarFor: serviceID, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("sidecar for %s: %v", serviceID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop the sidecar of %s: %v", serviceID, err)
		}
	})
}
