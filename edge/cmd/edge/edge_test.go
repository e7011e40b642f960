package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/portico-mesh/portico/services/platform/contract"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/edge/cachebench"
	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/identity"
)

type product struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Price any    `json:"price"`
}

type productPage struct {
	Items []product `json:"items"`
}

func createProduct(t *testing.T, productsURL, name string) product {
	t.Helper()
	r := mustCall(t, http.StatusCreated, http.MethodPost, productsURL+"/products", "", alice,
		fmt.Sprintf(`{"name": %q, "description": "test", "price": "10.00", "stock_quantity": 1}`, name))
	return decodeJSON[product](t, r.body)
}

func TestProductReadsAreCachedAndPurgedByEvents(t *testing.T) {
	exchange := newExchange()
	productsAddr := startProducts(t, exchange, time.Minute)
	edge := startEdge(t, edgeConfig(t, exchange, "products="+productsAddr))
	productsURL := "http://" + productsAddr
	p := createProduct(t, productsURL, "Laptop")
	item := edge.url + productPath(p.ID)
	list := edge.url + "/products"
	// The creation event purges the item and the lists: let it pass
	// before counting hits.
	waitFor(t, 20*time.Second, "the creation event", func() bool {
		return metric(t, edge.registry, "edge_purge_events_total", "result", "applied") >= 1
	})

	// Reads are public: cached once, then served to anyone.
	r := mustCall(t, 200, http.MethodGet, item, "products", alice, "")
	expectCache(t, "first item read", r, httpcache.Miss)
	if r.header.Get("Surrogate-Key") != "" {
		t.Errorf("Surrogate-Key reached the client")
	}
	etag := r.header.Get("ETag")
	expectCache(t, "second item read (other user)", mustCall(t, 200, http.MethodGet, item, "products", bob, ""), httpcache.Hit)
	expectCache(t, "anonymous item read", mustCall(t, 200, http.MethodGet, item, "products", identity.Identity{}, ""), httpcache.Hit)
	r = mustCall(t, http.StatusNotModified, http.MethodGet, item, "products", bob, "", "If-None-Match", etag)
	expectCache(t, "conditional item read", r, httpcache.Hit)
	if len(r.body) != 0 || r.header.Get("ETag") != etag {
		t.Errorf("304: body %q, ETag %q", r.body, r.header.Get("ETag"))
	}
	expectCache(t, "first list read", mustCall(t, 200, http.MethodGet, list, "products", alice, ""), httpcache.Miss)
	expectCache(t, "second list read", mustCall(t, 200, http.MethodGet, list, "products", bob, ""), httpcache.Hit)

	// A change committed by the service directly (as the ingress sends
	// writes) reaches the edge only as an event.
	before := metric(t, edge.registry, "edge_purge_events_total", "result", "applied")
	lagBefore := metric(t, edge.registry, "edge_purge_lag_seconds")
	mustCall(t, 200, http.MethodPut, productsURL+productPath(p.ID), "", alice, `{"name": "Laptop Pro"}`)
	committed := time.Now()
	// Polled every millisecond: the time is what a client would see.
	var staleReads int
	for {
		r := mustCall(t, 200, http.MethodGet, item, "products", bob, "")
		if decodeJSON[product](t, r.body).Name == "Laptop Pro" {
			break
		}
		staleReads++
		if time.Since(committed) > 20*time.Second {
			t.Fatalf("the update did not reach the item view within 20s")
		}
		time.Sleep(time.Millisecond)
	}
	visible := time.Since(committed)
	waitFor(t, 5*time.Second, "the purge to be counted", func() bool {
		return metric(t, edge.registry, "edge_purge_events_total", "result", "applied") > before
	})
	lag := metric(t, edge.registry, "edge_purge_lag_seconds") - lagBefore
	t.Logf("commit to purge: the event's time to its purge %.1f ms; the update was visible through the edge %v after the PUT returned (%d stale reads while the event travelled)",
		lag*1000, visible.Round(time.Millisecond), staleReads)

	// After the event, every cached view is fresh: the item and the list.
	r = mustCall(t, 200, http.MethodGet, list, "products", alice, "")
	page := decodeJSON[productPage](t, r.body)
	if len(page.Items) != 1 || page.Items[0].Name != "Laptop Pro" {
		t.Fatalf("list after the update: %s (X-Cache %s)", r.body, r.xcache())
	}
	expectCache(t, "list after purge", r, httpcache.Miss)
	expectCache(t, "list cached again", mustCall(t, 200, http.MethodGet, list, "products", alice, ""), httpcache.Hit)
	r = mustCall(t, 200, http.MethodGet, item, "products", alice, "", "If-None-Match", etag)
	if r.header.Get("ETag") == etag {
		t.Errorf("the old ETag still matches after the update")
	}
}

func TestUserReadsAreNeverStored(t *testing.T) {
	exchange := newExchange()
	usersAddr := startUsers(t, exchange)
	edge := startEdge(t, edgeConfig(t, exchange, "users="+usersAddr))
	usersURL := "http://" + usersAddr
	reg := func(name string) string {
		r := mustCall(t, http.StatusCreated, http.MethodPost, usersURL+"/users", "", identity.Identity{},
			fmt.Sprintf(`{"username": %q, "email": "%s@example.com", "password": "password123"}`, name, name))
		var u struct {
			ID json.Number `json:"id"`
		}
		if err := json.Unmarshal(r.body, &u); err != nil {
			t.Fatal(err)
		}
		return u.ID.String()
	}
	a := identity.Identity{UserID: reg("alice"), Username: "alice", Roles: []string{"user"}}
	b := identity.Identity{UserID: reg("bob"), Username: "bob", Roles: []string{"user"}}
	path := edge.url + "/users/" + a.UserID
	for i := range 2 {
		r := mustCall(t, 200, http.MethodGet, path, "users", a, "")
		expectCache(t, fmt.Sprint("alice reads herself ", i), r, httpcache.Miss)
		if !strings.Contains(r.header.Get("Cache-Control"), "no-store") {
			t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
		}
	}
	// Bob reads Alice's record as the service decides for him, never
	// from Alice's response.
	r := mustCall(t, 200, http.MethodGet, path, "users", b, "")
	expectCache(t, "bob reads alice", r, httpcache.Miss)
	if got := metric(t, edge.registry, "edge_cache_hits_total"); got != 0 {
		t.Errorf("%v hits on user reads", got)
	}
	// private, no-store: refused for no-store, the first rule it breaks.
	if got := metric(t, edge.registry, "edge_cache_not_stored_total", "reason", "no-store"); got != 3 {
		t.Errorf("%v responses refused as no-store, want 3", got)
	}
}

func TestRedisStoppedBypassesThenResumes(t *testing.T) {
	exchange := newExchange()
	productsAddr := startProducts(t, exchange, time.Minute)
	rds := localenvtest.StartRedis(t)
	cfg := edgeConfig(t, exchange, "products="+productsAddr)
	cfg.RedisURL = "redis://" + rds.Addr() + "/0"
	edge := startEdge(t, cfg)
	p := createProduct(t, "http://"+productsAddr, "Lamp")
	item := edge.url + productPath(p.ID)
	mustCall(t, 200, http.MethodGet, item, "products", alice, "")
	waitFor(t, 5*time.Second, "a hit", func() bool {
		return mustCall(t, 200, http.MethodGet, item, "products", alice, "").xcache() == httpcache.Hit
	})

	if err := rds.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Events keep coming while Redis is away: their purges fail and they
	// are requeued, not lost.
	mustCall(t, 200, http.MethodPut, "http://"+productsAddr+productPath(p.ID), "", alice, `{"name": "Lamp 2"}`)
	for i := range 10 {
		start := time.Now()
		r := mustCall(t, 200, http.MethodGet, item, "products", bob, "")
		expectCache(t, fmt.Sprint("read during the outage ", i), r, httpcache.Bypass)
		if took := time.Since(start); took > time.Second {
			t.Errorf("read during the outage took %v", took)
		}
	}
	list := mustCall(t, 200, http.MethodGet, edge.url+"/products", "products", bob, "")
	expectCache(t, "list during the outage", list, httpcache.Bypass)
	waitFor(t, 20*time.Second, "a failed purge", func() bool {
		return metric(t, edge.registry, "edge_purge_events_total", "result", "failed") >= 1
	})

	if err := rds.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the requeued events to be applied", func() bool {
		return metric(t, edge.registry, "edge_purge_events_total", "result", "applied") >= 2
	})
	waitFor(t, 10*time.Second, "caching to resume", func() bool {
		return mustCall(t, 200, http.MethodGet, item, "products", alice, "").xcache() == httpcache.Hit
	})
	r := mustCall(t, 200, http.MethodGet, item, "products", alice, "")
	if got := decodeJSON[product](t, r.body).Name; got != "Lamp 2" {
		t.Errorf("name after the outage %q", got)
	}
}

func TestDuplicateEventPurgesOnce(t *testing.T) {
	exchange := newExchange()
	productsAddr := startProducts(t, exchange, time.Minute)
	edge := startEdge(t, edgeConfig(t, exchange, "products="+productsAddr))
	p := createProduct(t, "http://"+productsAddr, "Desk")
	waitFor(t, 20*time.Second, "the creation event", func() bool {
		return metric(t, edge.registry, "edge_purge_events_total", "result", "applied") >= 1
	})
	item := edge.url + productPath(p.ID)

	ev, err := events.New("product.updated", "portico/products", fmt.Sprintf("products/%d", p.ID), map[string]any{"id": p.ID}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	publish := func() {
		t.Helper()
		conn, err := amqp.Dial(localenvtest.AMQPURL(t))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := broker.DeclareExchange(ch, exchange); err != nil {
			t.Fatal(err)
		}
		if err := ch.PublishWithContext(context.Background(), exchange, ev.Type, false, false, amqp.Publishing{
			ContentType: "application/cloudevents+json", MessageId: ev.ID, Body: body,
		}); err != nil {
			t.Fatal(err)
		}
	}

	mustCall(t, 200, http.MethodGet, item, "products", alice, "")
	expectCache(t, "cached", mustCall(t, 200, http.MethodGet, item, "products", alice, ""), httpcache.Hit)
	publish()
	waitFor(t, 20*time.Second, "the event", func() bool {
		return metric(t, edge.registry, "edge_purge_events_total", "result", "applied") >= 2
	})
	expectCache(t, "after the event", mustCall(t, 200, http.MethodGet, item, "products", alice, ""), httpcache.Miss)
	expectCache(t, "cached again", mustCall(t, 200, http.MethodGet, item, "products", alice, ""), httpcache.Hit)

	publish() // the same event id again, as at-least-once delivery may
	waitFor(t, 20*time.Second, "the duplicate", func() bool {
		return metric(t, edge.registry, "edge_purge_events_total", "result", "duplicate") >= 1
	})
	expectCache(t, "after the duplicate", mustCall(t, 200, http.MethodGet, item, "products", alice, ""), httpcache.Hit)
	if got := metric(t, edge.registry, "edge_purge_events_total", "result", "applied"); got != 2 {
		t.Errorf("applied events %v, want 2 (creation and the first copy)", got)
	}
}

func TestMergedDocumentationOfBothServices(t *testing.T) {
	exchange := newExchange()
	productsAddr := startProducts(t, exchange, time.Minute)
	usersAddr := startUsers(t, exchange)
	edge := startEdge(t, edgeConfig(t, exchange, "products="+productsAddr+",users="+usersAddr))

	var doc reply
	waitFor(t, 20*time.Second, "the merged document", func() bool {
		r, err := call(http.MethodGet, edge.url+"/openapi.json", "", identity.Identity{}, "")
		doc = r
		return err == nil && r.status == 200
	})
	if err := apidocs.Validate(doc.body); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"/api/users/login"`, `"/api/products/products/{id}"`, `"bearerAuth"`} {
		if !strings.Contains(string(doc.body), want) {
			t.Errorf("merged document lacks %s", want)
		}
	}
	// A service's own /openapi.json still goes to the service when the
	// ingress sends it for that service.
	r := mustCall(t, 200, http.MethodGet, edge.url+"/openapi.json", "products", identity.Identity{}, "")
	if !strings.Contains(string(r.body), `"title":"Portico Products"`) {
		t.Errorf("products' own document was not proxied: %.200s", r.body)
	}

	page := mustCall(t, 200, http.MethodGet, edge.url+"/docs/", "", identity.Identity{}, "")
	if !strings.Contains(string(page.body), "swagger-ui-bundle.js") {
		t.Errorf("docs page: %.300s", page.body)
	}
	for asset, contentType := range map[string]string{
		"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "init.js": "text/javascript",
	} {
		r := mustCall(t, 200, http.MethodGet, edge.url+"/docs/"+asset, "", identity.Identity{}, "")
		if !strings.HasPrefix(r.header.Get("Content-Type"), contentType) || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: Content-Type %q, X-Content-Type-Options %q", asset, r.header.Get("Content-Type"), r.header.Get("X-Content-Type-Options"))
		}
	}
	if r := mustCall(t, 200, http.MethodGet, edge.url+"/docs/init.js", "", identity.Identity{}, ""); !strings.Contains(string(r.body), "../openapi.json") {
		t.Errorf("init.js does not load the merged document: %s", r.body)
	}
	mustCall(t, 404, http.MethodGet, edge.url+"/docs/..%2f..%2fgo.mod", "", identity.Identity{}, "")
	// /docs redirects to /docs/ (the client follows), where the page's
	// relative links work.
	r = mustCall(t, http.StatusOK, http.MethodGet, edge.url+"/docs", "", identity.Identity{}, "")
	if !strings.Contains(string(r.body), "swagger-ui-bundle.js") {
		t.Errorf("/docs: %.300s", r.body)
	}
}

// TestCacheLatencyHitVsMiss measures hits against misses on a real
// product read through the edge (not through the ingress: see
// edge/cmd/benchcache for that). Set EDGE_BENCH_REQUESTS for a longer run.
func TestCacheLatencyHitVsMiss(t *testing.T) {
	exchange := newExchange()
	productsAddr := startProducts(t, exchange, time.Minute)
	edge := startEdge(t, edgeConfig(t, exchange, "products="+productsAddr))
	p := createProduct(t, "http://"+productsAddr, "Bench")
	// The creation event purges the item: let it pass first.
	waitFor(t, 20*time.Second, "the creation event", func() bool {
		return metric(t, edge.registry, "edge_purge_events_total", "result", "applied") >= 1
	})
	n := 300
	if v, err := strconv.Atoi(os.Getenv("EDGE_BENCH_REQUESTS")); err == nil && v > 0 {
		n = v
	}
	header := http.Header{}
	header.Set(contract.HeaderUpstream, "products")
	identity.Set(header.Set, alice)
	res, err := cachebench.Run(context.Background(), cachebench.Config{
		URL: edge.url + productPath(p.ID), Requests: n, Header: header,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.Print(&out)
	t.Logf("edge cache latency on GET /products/{id}, %d rounds:\n%s", n, out.String())
	if res.Hit.N < n*9/10 || res.Miss.N < n*9/10 {
		t.Errorf("too many requests misclassified: %+v", res)
	}
}
