package httpcache_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/edge/upstream"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/platform/web"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Redis))
}

// origin is a scripted service that counts the requests it answers.
type origin struct {
	requests atomic.Int64
	handler  atomic.Pointer[http.HandlerFunc]
	addr     string
}

func newOrigin(t *testing.T, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{}
	o.set(h)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		(*o.handler.Load())(w, r)
	}))
	t.Cleanup(srv.Close)
	o.addr = strings.TrimPrefix(srv.URL, "http://")
	return o
}

func (o *origin) set(h http.HandlerFunc) { o.handler.Store(&h) }

// edge is the cache in front of one origin, named "svc", served on a
// loopback port the way the edge binary serves it.
type edge struct {
	url   string
	store *httpcache.Store
	cache *httpcache.Cache
	reg   *prometheus.Registry
}

type edgeOptions struct {
	redisAddr  string
	retryAfter time.Duration
	// now is the cache's clock; nil is time.Now.
	now func() time.Time
	// tracing traces the edge as the edge binary does; zero is off.
	tracing telemetry.Tracing
}

// clock is a test clock that moves only when told, so that entries age
// without the test waiting in real time.
type clock struct{ now atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.now.Store(time.Now().UnixNano())
	return c
}

func (c *clock) Now() time.Time             { return time.Unix(0, c.now.Load()) }
func (c *clock) Advance(d time.Duration)    { c.now.Add(int64(d)) }
func withClock(c *clock) func(*edgeOptions) { return func(eo *edgeOptions) { eo.now = c.Now } }

func newEdge(t *testing.T, o *origin, opts ...func(*edgeOptions)) *edge {
	t.Helper()
	eo := edgeOptions{redisAddr: localenvtest.RedisAddr(t), retryAfter: 200 * time.Millisecond}
	for _, f := range opts {
		f(&eo)
	}
	client, err := httpcache.NewRedisClient("redis://"+eo.redisAddr+"/0", 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	if err := httpcache.TraceRedis(client, eo.tracing); err != nil {
		t.Fatal(err)
	}
	store, err := httpcache.NewStore(httpcache.StoreConfig{
		Client:     client,
		Prefix:     "test:" + uuid.NewString(),
		RetryAfter: eo.retryAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	proxy := upstream.New(upstream.Config{Addresses: upstream.Addresses{"svc": o.addr}, Tracing: eo.tracing})
	t.Cleanup(proxy.CloseIdleConnections)
	cache, err := httpcache.New(httpcache.Config{Store: store, Origin: proxy, Registerer: reg, Now: eo.now})
	if err != nil {
		t.Fatal(err)
	}
	srv := web.New(web.Config{Service: "edge-test", Classify: upstream.Classify, Registry: reg, Tracing: eo.tracing})
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
		srv.Mount(web.Route{Method: m, Path: "/*", Handler: cache.Handler()})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edge shutdown: %v", err)
		}
		cache.Close()
	})
	return &edge{url: "http://" + ln.Addr().String(), store: store, cache: cache, reg: reg}
}

type result struct {
	status int
	header http.Header
	body   string
}

func (r result) xcache() string { return r.header.Get(httpcache.HeaderXCache) }

// get sends a GET for upstream svc with the given header pairs.
func (e *edge) get(t *testing.T, path string, kv ...string) result {
	t.Helper()
	r, err := e.send(http.MethodGet, path, kv...)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return r
}

// send does not fail the test, so goroutines may use it.
func (e *edge) send(method, path string, kv ...string) (result, error) {
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		return result{}, err
	}
	req.Header.Set(contract.HeaderUpstream, "svc")
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// expect checks status, X-Cache and body of r.
func expect(t *testing.T, what string, r result, status int, xcache, body string) {
	t.Helper()
	if r.status != status || r.xcache() != xcache || (body != "*" && r.body != body) {
		t.Fatalf("%s: got %d %s %q, want %d %s %q", what, r.status, r.xcache(), r.body, status, xcache, body)
	}
}

// counter sums every series of a counter family.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
