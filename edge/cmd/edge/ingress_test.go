package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/edge/cachebench"
	"github.com/portico-mesh/portico/edge/controlplane"
	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/envoy"
	"github.com/portico-mesh/portico/mesh/entries"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/identity"
	"github.com/portico-mesh/portico/services/platform/registry"
)

// registerInMesh registers a running service instance with its sidecar
// and starts the sidecar, as make up does.
func registerInMesh(t *testing.T, consul *localenv.Consul, name, id, addr string) {
	t.Helper()
	_, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	reg, err := registry.New(registry.Config{
		ConsulAddr: consul.HTTPAddr(), Name: name, ID: id, Address: "127.0.0.1", Port: port,
		SidecarPort: freePort(t), OpenAPIPath: "/openapi.json", CheckInterval: time.Second, Log: testLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { reg.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	client, err := consul.Client()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, name+" to register", func() bool {
		svc, _, err := client.Agent().Service(id, nil)
		return err == nil && svc != nil
	})
	startSidecar(t, consul, id)
}

// startIngress runs the control plane in-process with the default edge
// configuration (products reads cached by the edge, docs on the edge) and
// an ingress Envoy it programs; it returns the ingress URL.
func startIngress(t *testing.T, consul *localenv.Consul) string {
	t.Helper()
	client, err := consul.Client()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := edgeconfig.Parse(edgeconfig.Default())
	if err != nil {
		t.Fatal(err)
	}
	// The benchmark sends a few thousand requests a second; the default
	// per-route token bucket is for production traffic.
	doc.Defaults.RateLimit = &edgeconfig.RateLimit{
		Local: &edgeconfig.TokenBucket{Requests: 100_000, Per: edgeconfig.Duration(time.Second), Burst: 100_000},
	}
	for i := range doc.Routes {
		doc.Routes[i].RateLimit = nil
	}
	raw, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	const configKey, statusKey = "portico/edge/config", "portico/edge/config-status"
	if _, err := client.KV().Put(&api.KVPair{Key: configKey, Value: raw}, nil); err != nil {
		t.Fatal(err)
	}
	ingressPort := freePort(t)
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "controlplane.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	ctx := context.Background()
	cp, err := controlplane.New(ctx, controlplane.Config{
		ConsulHTTPAddr: consul.HTTPAddr(), XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Listener:       ir.Listener{Address: "127.0.0.1", Port: uint32(ingressPort)},
		IngressService: "ingress", ConfigKey: configKey, StatusKey: statusKey, ShutdownTimeout: 5 * time.Second,
	}, slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cp.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	xdsHost, xdsPortText, _ := net.SplitHostPort(cp.XDSAddr())
	xdsPort, _ := strconv.Atoi(xdsPortText)
	startCtx, cancelStart := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelStart()
	ingress, err := localenv.StartEnvoy(startCtx, localenv.EnvoyOptions{
		Name: "ingress-1", Dir: filepath.Join(dir, "ingress"), WaitLive: true, LogLevel: "warn",
		Bootstrap: func(adminPort int) ([]byte, error) {
			return envoy.Ingress(envoy.IngressBootstrap{
				NodeID: "ingress-1", AdminPort: adminPort, XDSHost: xdsHost, XDSPort: xdsPort,
				OutlierLog: filepath.Join(dir, "outlier.log"),
			})
		},
	})
	if err != nil {
		t.Fatalf("ingress: %v (control plane log in %s)", err, logFile.Name())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = ingress.Stop(ctx)
	})
	return "http://127.0.0.1:" + strconv.Itoa(ingressPort)
}

// stack is the whole system on loopback: Consul with the real mesh
// entries, users and products with their sidecars, the edge with its
// sidecar, the control plane and an ingress Envoy.
type stack struct {
	ingress string
	edge    *testEdge
}

func startStack(t *testing.T) stack {
	t.Helper()
	consul := localenvtest.StartConsul(t)
	client, err := consul.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := entries.Apply(ctx, client); err != nil {
		t.Fatalf("mesh entries: %v", err)
	}
	exchange := newExchange()
	usersAddr := startUsers(t, exchange)
	productsAddr := startProducts(t, exchange, time.Minute)
	registerInMesh(t, consul, "users", "users-ingress-test", usersAddr)
	registerInMesh(t, consul, "products", "products-ingress-test", productsAddr)

	cfg := edgeConfig(t, exchange, fmt.Sprintf("users=127.0.0.1:%d,products=127.0.0.1:%d", freePort(t), freePort(t)))
	cfg.Consul.ConsulHTTPAddr = consul.HTTPAddr()
	cfg.Consul.ServiceID = "edge-ingress-test"
	cfg.Consul.SidecarPort = freePort(t)
	cfg.Consul.CheckInterval = time.Second
	cfg.Consul.DrainDelay = 0
	edge := startEdge(t, cfg)
	waitFor(t, 30*time.Second, "the edge to register", func() bool {
		svc, _, err := client.Agent().Service("edge-ingress-test", nil)
		return err == nil && svc != nil
	})
	startSidecar(t, consul, "edge-ingress-test")
	ingress := startIngress(t, consul)
	// Ready when a public route answers through the mesh...
	waitFor(t, 60*time.Second, "the ingress to route", func() bool {
		r, err := call(http.MethodGet, ingress+"/api/users/.well-known/jwks.json", "", identity.Identity{}, "")
		return err == nil && r.status == http.StatusOK
	})
	// ...and the ingress has the products instance too: a write goes to it
	// directly (not through the edge), and answers 503 until it is known.
	// Deleting a product that does not exist changes nothing.
	mustCall(t, http.StatusCreated, http.MethodPost, ingress+"/api/users/users", "", identity.Identity{},
		`{"username": "probe", "email": "probe@example.com", "password": "password123"}`)
	probe := []string{"Authorization", login(t, ingress, "probe@example.com", "password123")}
	waitFor(t, 30*time.Second, "the ingress to reach products", func() bool {
		r, err := call(http.MethodDelete, ingress+"/api/products/products/0", "", identity.Identity{}, "", probe...)
		return err == nil && r.status != http.StatusServiceUnavailable
	})
	return stack{ingress: ingress, edge: edge}
}

// login returns a bearer token, through the ingress.
func login(t *testing.T, ingress, email, password string) string {
	t.Helper()
	r := mustCall(t, 200, http.MethodPost, ingress+"/api/users/login", "", identity.Identity{},
		fmt.Sprintf(`{"email": %q, "password": %q}`, email, password))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.body, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("login: %s", r.body)
	}
	return "Bearer " + tok.AccessToken
}

// TestThroughTheIngress is the whole path clients take: the Envoy ingress
// verifies the token and sends cached routes to the edge, through the
// edge's sidecar to the products service's; writes go to the service
// directly, and their events purge the edge's cache.
func TestThroughTheIngress(t *testing.T) {
	st := startStack(t)
	ingress, edge := st.ingress, st.edge
	anyone := identity.Identity{}

	// Register and log in through the ingress (public routes).
	mustCall(t, http.StatusCreated, http.MethodPost, ingress+"/api/users/users", "", anyone,
		`{"username": "carol", "email": "carol@example.com", "password": "password123"}`)
	bearer := login(t, ingress, "carol@example.com", "password123")
	withToken := []string{"Authorization", bearer}

	created := mustCall(t, http.StatusCreated, http.MethodPost, ingress+"/api/products/products", "", anyone,
		`{"name": "Ingress", "description": "d", "price": "5.00", "stock_quantity": 1}`, withToken...)
	p := decodeJSON[product](t, created.body)
	item := ingress + "/api/products/products/" + strconv.FormatInt(p.ID, 10)
	list := ingress + "/api/products/products"
	waitFor(t, 20*time.Second, "the creation event", func() bool {
		return metric(t, edge.registry, "edge_purge_events_total", "result", "applied") >= 1
	})

	var first reply
	waitFor(t, 60*time.Second, "a product read through the ingress and the edge", func() bool {
		r, err := call(http.MethodGet, item, "", anyone, "", withToken...)
		first = r
		return err == nil && r.status == http.StatusOK && r.xcache() != ""
	})
	if first.xcache() != httpcache.Miss {
		t.Errorf("first read: X-Cache %s", first.xcache())
	}
	expectCache(t, "second read", mustCall(t, 200, http.MethodGet, item, "", anyone, "", withToken...), httpcache.Hit)
	mustCall(t, http.StatusUnauthorized, http.MethodGet, item, "", anyone, "")
	etag := first.header.Get("ETag")
	expectCache(t, "conditional read", mustCall(t, http.StatusNotModified, http.MethodGet, item, "", anyone, "", "Authorization", bearer, "If-None-Match", etag), httpcache.Hit)
	expectCache(t, "list", mustCall(t, 200, http.MethodGet, list, "", anyone, "", withToken...), httpcache.Miss)
	expectCache(t, "list again", mustCall(t, 200, http.MethodGet, list, "", anyone, "", withToken...), httpcache.Hit)
	if first.header.Get("Surrogate-Key") != "" {
		t.Error("Surrogate-Key reached the client")
	}

	// A write through the ingress goes to the service; its event purges.
	lagBefore := metric(t, edge.registry, "edge_purge_lag_seconds")
	mustCall(t, 200, http.MethodPut, item, "", anyone, `{"name": "Ingress 2"}`, withToken...)
	committed := time.Now()
	stale := 0
	for {
		r := mustCall(t, 200, http.MethodGet, item, "", anyone, "", withToken...)
		if decodeJSON[product](t, r.body).Name == "Ingress 2" {
			break
		}
		stale++
		if time.Since(committed) > 20*time.Second {
			t.Fatal("the update never reached the item view")
		}
		time.Sleep(time.Millisecond)
	}
	visible := time.Since(committed)
	page := decodeJSON[productPage](t, mustCall(t, 200, http.MethodGet, list, "", anyone, "", withToken...).body)
	if len(page.Items) != 1 || page.Items[0].Name != "Ingress 2" {
		t.Errorf("list after the update: %+v", page)
	}
	waitFor(t, 5*time.Second, "the lag to be recorded", func() bool {
		return metric(t, edge.registry, "edge_purge_lag_seconds") > lagBefore
	})
	t.Logf("through the ingress: commit to purge %.1f ms (event time to purge); the update was visible %v after the PUT returned (%d stale reads)",
		(metric(t, edge.registry, "edge_purge_lag_seconds")-lagBefore)*1000, visible.Round(time.Millisecond), stale)

	// The merged documentation, through the ingress, without a token.
	var docBody []byte
	waitFor(t, 30*time.Second, "the merged document through the ingress", func() bool {
		r, err := call(http.MethodGet, ingress+"/openapi.json", "", anyone, "")
		docBody = r.body
		return err == nil && r.status == 200 && strings.Contains(string(r.body), "/api/users/login") &&
			strings.Contains(string(r.body), "/api/products/products")
	})
	if err := apidocs.Validate(docBody); err != nil {
		t.Fatal(err)
	}
	if r := mustCall(t, 200, http.MethodGet, ingress+"/docs/", "", anyone, ""); !strings.Contains(string(r.body), "swagger-ui-bundle.js") {
		t.Errorf("/docs/ through the ingress: %.200s", r.body)
	}

	// Hit and miss latency through the ingress.
	n := 300
	if v, err := strconv.Atoi(os.Getenv("EDGE_BENCH_REQUESTS")); err == nil && v > 0 {
		n = v
	}
	res, err := cachebench.Run(context.Background(), cachebench.Config{
		URL: item, Requests: n, Header: http.Header{"Authorization": {bearer}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.Print(&out)
	t.Logf("cache latency through the ingress on GET /api/products/products/{id}, %d rounds:\n%s", n, out.String())
}
