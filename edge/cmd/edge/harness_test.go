package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/identity"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/products"
	"github.com/portico-mesh/portico/services/users"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Postgres, localenvtest.Redis, localenvtest.RabbitMQ, localenvtest.Consul))
}

var (
	alice = identity.Identity{UserID: "1", Username: "alice", Email: "alice@example.com", Roles: []string{"user"}}
	bob   = identity.Identity{UserID: "2", Username: "bob", Email: "bob@example.com", Roles: []string{"user"}}
)

// The administrator every test users service starts with.
const (
	adminEmail    = "root@example.com"
	adminPassword = "root-password-1"
)

// testLog shows warnings and errors of the processes under test.
func testLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// serveOn runs serve on a fresh loopback listener until the test ends.
func serveOn(t *testing.T, name string, serve func(ctx context.Context, ln net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s shutdown: %v", name, err)
		}
	})
	return ln.Addr().String()
}

// startProducts runs the real products service in-process, built by
// products.Build as its command does, on a fresh database, publishing to
// exchange.
func startProducts(t *testing.T, exchange string, maxAge time.Duration) string {
	t.Helper()
	ctx := context.Background()
	cfg := service.BaseConfig{
		DatabaseURL:     pgtest.NewDatabase(t, migrations.Products()),
		AMQPURL:         localenvtest.AMQPURL(t),
		AMQPExchange:    exchange,
		LogLevel:        "warn",
		ShutdownTimeout: 10 * time.Second,
	}
	rt, err := service.Open(ctx, cfg, products.Name, "test", migrations.Products(), testLog())
	if err != nil {
		t.Fatalf("open products: %v", err)
	}
	srv, err := products.Build(ctx, products.Deps{Pool: rt.Pool, Web: rt.WebConfig(nil), Config: products.Config{CacheMaxAge: maxAge}})
	if err != nil {
		_ = rt.Close(ctx)
		t.Fatal(err)
	}
	return serveOn(t, "products", func(ctx context.Context, ln net.Listener) error { return rt.Serve(ctx, srv, ln) })
}

// startUsers runs the real users service in-process, built by users.Build
// as its command does, on a fresh database, with the admin
// BOOTSTRAP_ADMIN_* would create in production.
func startUsers(t *testing.T, exchange string) string {
	t.Helper()
	ctx := context.Background()
	cfg := service.BaseConfig{
		DatabaseURL:     pgtest.NewDatabase(t, migrations.Users()),
		AMQPURL:         localenvtest.AMQPURL(t),
		AMQPExchange:    exchange,
		LogLevel:        "warn",
		ShutdownTimeout: 10 * time.Second,
	}
	rt, err := service.Open(ctx, cfg, users.Name, "test", migrations.Users(), testLog())
	if err != nil {
		t.Fatalf("open users: %v", err)
	}
	srv, err := users.Build(ctx, users.Deps{Pool: rt.Pool, Web: rt.WebConfig(nil), Config: users.Config{
		JWTIssuer: "portico-users", JWTAudience: "portico", JWTTTL: 15 * time.Minute, JWTKeysDir: t.TempDir(),
		BootstrapAdminUsername: "root", BootstrapAdminEmail: adminEmail, BootstrapAdminPassword: users.Secret(adminPassword),
	}})
	if err != nil {
		_ = rt.Close(ctx)
		t.Fatal(err)
	}
	return serveOn(t, "users", func(ctx context.Context, ln net.Listener) error { return rt.Serve(ctx, srv, ln) })
}

// testEdge is the edge process in-process, with its metrics at hand.
type testEdge struct {
	url      string
	registry *prometheus.Registry
	store    *httpcache.Store
}

// edgeConfig is the configuration of a test edge: its own cache prefix
// and purge queue, the test exchange.
func edgeConfig(t *testing.T, exchange, upstreams string) config {
	t.Helper()
	cfg, err := loadConfig([]string{
		"EDGE_UPSTREAMS=" + upstreams,
		"REDIS_URL=redis://" + localenvtest.RedisAddr(t) + "/0",
		"EDGE_REDIS_RETRY_AFTER=200ms",
		"EDGE_CACHE_PREFIX=test:" + uuid.NewString(),
		"AMQP_URL=" + localenvtest.AMQPURL(t),
		"AMQP_EXCHANGE=" + exchange,
		"EDGE_PURGE_QUEUE=test.edge." + uuid.NewString(),
		"SHUTDOWN_TIMEOUT=5s",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.SwaggerUIDir = swaggerUIDir(t)
	return cfg
}

// swaggerUIDir holds stand-ins for the Swagger UI assets: the tests check
// how the edge serves them, not swagger-ui-dist itself (that is
// edge/scripts/swagger-ui-smoke.sh, in a browser), so they need no npm
// step. The files are named after the package's own.
func swaggerUIDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png", "favicon-16x16.png"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("/* "+name+" */\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := apidocs.CheckAssets(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startEdge(t *testing.T, cfg config) *testEdge {
	t.Helper()
	e, err := newEdge(context.Background(), cfg, testLog())
	if err != nil {
		t.Fatalf("new edge: %v", err)
	}
	addr := serveOn(t, "edge", e.serve)
	te := &testEdge{url: "http://" + addr, registry: e.registry, store: e.store}
	// The purge queue must be bound before the test writes anything.
	waitFor(t, 30*time.Second, "the purge consumer to connect", e.consumer.Connected)
	return te
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) xcache() string { return r.header.Get(httpcache.HeaderXCache) }

// call sends a request as the ingress would: for upstream, with the
// caller's identity headers (none for the zero identity).
func call(method, url, upstream string, caller identity.Identity, body string, kv ...string) (reply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return reply{}, err
	}
	if upstream != "" {
		req.Header.Set(contract.HeaderUpstream, upstream)
		req.Header.Set("X-Forwarded-Prefix", "/api/"+upstream)
	}
	if !caller.Anonymous() {
		identity.Set(req.Header.Set, caller)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func mustCall(t *testing.T, want int, method, url, upstream string, caller identity.Identity, body string, kv ...string) reply {
	t.Helper()
	r, err := call(method, url, upstream, caller, body, kv...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, r.status, want, r.body)
	}
	return r
}

func expectCache(t *testing.T, what string, r reply, want string) {
	t.Helper()
	if r.xcache() != want {
		t.Fatalf("%s: X-Cache %q, want %q", what, r.xcache(), want)
	}
}

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric sums the series of a counter family that carry every given
// label pair.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum
}

func newExchange() string { return "portico.test.edge." + uuid.NewString() }

func productPath(id int64) string { return fmt.Sprintf("/products/%d", id) }
