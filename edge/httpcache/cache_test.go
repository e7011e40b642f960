package httpcache_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/contract"
)

// fixed answers every request with the same headers and body.
func fixed(body string, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		_, _ = w.Write([]byte(body))
	}
}

func TestMissThenHit(t *testing.T) {
	o := newOrigin(t, fixed(`{"n":1}`, "Cache-Control", "public, max-age=60", "Content-Type", "application/json", "Surrogate-Key", "thing:1 things"))
	e := newEdge(t, o)

	first := e.get(t, "/things/1")
	expect(t, "first", first, 200, httpcache.Miss, `{"n":1}`)
	second := e.get(t, "/things/1")
	expect(t, "second", second, 200, httpcache.Hit, `{"n":1}`)
	if got := o.requests.Load(); got != 1 {
		t.Errorf("origin answered %d requests, want 1", got)
	}
	for _, r := range []result{first, second} {
		if r.header.Get("Surrogate-Key") != "" {
			t.Errorf("Surrogate-Key reached the client: %q", r.header.Get("Surrogate-Key"))
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if r.header.Get("Cache-Control") != "public, max-age=60" {
			t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
		}
	}
	if second.header.Get("Age") == "" {
		t.Error("a hit carries no Age")
	}
	// The query is part of the key.
	expect(t, "other query", e.get(t, "/things/1?x=1"), 200, httpcache.Miss, "*")
	if hits, misses := counter(t, e.reg, "edge_cache_hits_total"), counter(t, e.reg, "edge_cache_misses_total"); hits != 1 || misses != 2 {
		t.Errorf("metrics: %v hits, %v misses; want 1 and 2", hits, misses)
	}
}

func TestResponsesTheOriginForbidsAreNeverStored(t *testing.T) {
	tests := []struct {
		name   string
		header []string
	}{
		{"no-store", []string{"Cache-Control", "no-store"}},
		{"private", []string{"Cache-Control", "private, max-age=60"}},
		{"private no-store (the users service)", []string{"Cache-Control", "private, no-store"}},
		{"no-cache", []string{"Cache-Control", "no-cache, max-age=60"}},
		{"no freshness", nil},
		{"vary star", []string{"Cache-Control", "public, max-age=60", "Vary", "*"}},
		{"set-cookie", []string{"Cache-Control", "public, max-age=60", "Set-Cookie", "session=abc"}},
		{"expired", []string{"Cache-Control", "public", "Expires", "0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, fixed("body", tc.header...))
			e := newEdge(t, o)
			for i := range 3 {
				expect(t, fmt.Sprint("request ", i), e.get(t, "/x"), 200, httpcache.Miss, "body")
			}
			if got := o.requests.Load(); got != 3 {
				t.Errorf("origin answered %d requests, want 3", got)
			}
		})
	}
}

// echoCaller answers with the caller's user id, as a personal resource.
func echoCaller(cacheControl string, vary ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", cacheControl)
		for _, v := range vary {
			w.Header().Add("Vary", v)
		}
		_, _ = fmt.Fprintf(w, "for %s", r.Header.Get(contract.HeaderUserID))
	}
}

func TestSecondUserNeverGetsFirstUsersPrivateResponse(t *testing.T) {
	for _, cc := range []string{"private, max-age=60", "max-age=60", "private, no-store", "no-cache"} {
		t.Run(cc, func(t *testing.T) {
			o := newOrigin(t, echoCaller(cc))
			e := newEdge(t, o)
			expect(t, "alice", e.get(t, "/me", contract.HeaderUserID, "alice"), 200, httpcache.Miss, "for alice")
			expect(t, "bob", e.get(t, "/me", contract.HeaderUserID, "bob"), 200, httpcache.Miss, "for bob")
			expect(t, "anonymous", e.get(t, "/me"), 200, httpcache.Miss, "for ")
			expect(t, "alice again", e.get(t, "/me", contract.HeaderUserID, "alice"), 200, httpcache.Miss, "for alice")
		})
	}
	// Authorization counts as credentials too.
	t.Run("authorization without public", func(t *testing.T) {
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = w.Write([]byte(r.Header.Get("Authorization")))
		})
		e := newEdge(t, o)
		expect(t, "a", e.get(t, "/me", "Authorization", "Bearer a"), 200, httpcache.Miss, "Bearer a")
		expect(t, "b", e.get(t, "/me", "Authorization", "Bearer b"), 200, httpcache.Miss, "Bearer b")
	})
}

// Concurrent misses of different callers are collapsed into one origin
// request only when the response may be shared: a private response made
// for one of them must never answer the others.
func TestConcurrentCallersNeverShareAPrivateResponse(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		echoCaller("private, max-age=60")(w, r)
	})
	e := newEdge(t, o)
	const callers = 8
	var wg sync.WaitGroup
	results := make([]result, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			results[i], errs[i] = e.send(http.MethodGet, "/me", contract.HeaderUserID, fmt.Sprint("user-", i))
		})
	}
	// Every request has reached the cache (and missed) before the origin
	// answers, so that they are in flight together.
	if err := localenv.Poll(t.Context(), 10*time.Millisecond, func(context.Context) error {
		if got := counter(t, e.reg, "edge_cache_misses_total"); got != callers {
			return fmt.Errorf("%v of %d requests reached the cache", got, callers)
		}
		return nil
	}); err != nil {
		close(release)
		t.Fatal(err)
	}
	close(release)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if want := fmt.Sprint("for user-", i); results[i].body != want {
			t.Errorf("caller %d got %q, want %q", i, results[i].body, want)
		}
	}
}

func TestAuthenticatedRequestStoredOnlyWhenOriginAllowsExplicitly(t *testing.T) {
	o := newOrigin(t, fixed("catalog", "Cache-Control", "public, max-age=60"))
	e := newEdge(t, o)
	expect(t, "alice", e.get(t, "/catalog", contract.HeaderUserID, "alice"), 200, httpcache.Miss, "catalog")
	expect(t, "bob", e.get(t, "/catalog", contract.HeaderUserID, "bob", "Authorization", "Bearer x"), 200, httpcache.Hit, "catalog")
	expect(t, "anonymous", e.get(t, "/catalog"), 200, httpcache.Hit, "catalog")

	o2 := newOrigin(t, fixed("shared", "Cache-Control", "s-maxage=60"))
	e2 := newEdge(t, o2)
	expect(t, "s-maxage", e2.get(t, "/x", contract.HeaderUserID, "alice"), 200, httpcache.Miss, "shared")
	expect(t, "s-maxage again", e2.get(t, "/x", contract.HeaderUserID, "bob"), 200, httpcache.Hit, "shared")
}

func TestVaryOnIdentityKeysEachCaller(t *testing.T) {
	o := newOrigin(t, echoCaller("public, max-age=60", "X-Portico-User-Id"))
	e := newEdge(t, o)
	expect(t, "alice", e.get(t, "/me", contract.HeaderUserID, "alice"), 200, httpcache.Miss, "for alice")
	expect(t, "bob", e.get(t, "/me", contract.HeaderUserID, "bob"), 200, httpcache.Miss, "for bob")
	expect(t, "alice hit", e.get(t, "/me", contract.HeaderUserID, "alice"), 200, httpcache.Hit, "for alice")
	expect(t, "bob hit", e.get(t, "/me", contract.HeaderUserID, "bob"), 200, httpcache.Hit, "for bob")
	expect(t, "anonymous", e.get(t, "/me"), 200, httpcache.Miss, "for ")
	if got := o.requests.Load(); got != 3 {
		t.Errorf("origin answered %d requests, want 3", got)
	}
}

func TestIfNoneMatchIsAnsweredFromTheCache(t *testing.T) {
	o := newOrigin(t, fixed("v1", "Cache-Control", "public, max-age=60", "ETag", `"1"`))
	e := newEdge(t, o)
	// A conditional miss: the stored response is complete, the client
	// still gets its 304.
	r := e.get(t, "/p", "If-None-Match", `"1"`)
	expect(t, "conditional miss", r, 304, httpcache.Miss, "")
	r = e.get(t, "/p", "If-None-Match", `W/"0", "1"`)
	expect(t, "conditional hit", r, 304, httpcache.Hit, "")
	if r.header.Get("ETag") != `"1"` || r.header.Get("Cache-Control") == "" {
		t.Errorf("304 headers: %v", r.header)
	}
	expect(t, "other tag", e.get(t, "/p", "If-None-Match", `"2"`), 200, httpcache.Hit, "v1")
	if got := o.requests.Load(); got != 1 {
		t.Errorf("origin answered %d requests, want 1", got)
	}
}

func TestConcurrentMissesMakeOneOriginRequest(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(300 * time.Millisecond)
		fixed("slow", "Cache-Control", "public, max-age=60")(w, nil)
	})
	e := newEdge(t, o)
	const n = 25
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := range n {
		wg.Go(func() {
			// Different callers: a public response may be shared.
			r, err := e.send(http.MethodGet, "/slow", contract.HeaderUserID, fmt.Sprint("u", i))
			if err != nil || r.status != 200 || r.body != "slow" {
				failures.Add(1)
			}
		})
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d requests failed", failures.Load())
	}
	if got := o.requests.Load(); got != 1 {
		t.Fatalf("%d concurrent misses made %d origin requests, want 1", n, got)
	}
	t.Logf("%d concurrent misses -> %d origin request", n, o.requests.Load())
}

func TestStaleWhileRevalidate(t *testing.T) {
	// Entries age on a test clock, which the origin's Date header follows
	// as a real origin's clock would.
	clk := newClock()
	var version atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "public, max-age=60, stale-while-revalidate=300")
		_, _ = fmt.Fprintf(w, "v%d", version.Add(1))
	})
	e := newEdge(t, o, withClock(clk))
	expect(t, "first", e.get(t, "/s"), 200, httpcache.Miss, "v1")
	clk.Advance(61 * time.Second)
	expect(t, "stale", e.get(t, "/s"), 200, httpcache.Stale, "v1")
	// The refresh runs in the background and stores a fresh v2.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := localenv.Poll(ctx, 20*time.Millisecond, func(context.Context) error {
		if r := e.get(t, "/s"); r.xcache() != httpcache.Hit || r.body != "v2" {
			return fmt.Errorf("got %s %q", r.xcache(), r.body)
		}
		return nil
	}); err != nil {
		t.Fatalf("the background refresh: %v", err)
	}
	if got := o.requests.Load(); got != 2 {
		t.Errorf("origin answered %d requests, want 2", got)
	}

	// must-revalidate forbids serving stale.
	clk2 := newClock()
	o2 := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Date", clk2.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "public, max-age=60, stale-while-revalidate=300, must-revalidate")
		_, _ = w.Write([]byte("x"))
	})
	e2 := newEdge(t, o2, withClock(clk2))
	expect(t, "first", e2.get(t, "/s"), 200, httpcache.Miss, "x")
	expect(t, "fresh", e2.get(t, "/s"), 200, httpcache.Hit, "x")
	clk2.Advance(61 * time.Second)
	expect(t, "expired", e2.get(t, "/s"), 200, httpcache.Miss, "x")
	if got := o2.requests.Load(); got != 2 {
		t.Errorf("origin answered %d requests, want 2", got)
	}
}

func TestRedisOutageBypassesAndRecovers(t *testing.T) {
	rds := localenvtest.StartRedis(t)
	o := newOrigin(t, fixed("ok", "Cache-Control", "public, max-age=60"))
	e := newEdge(t, o, func(eo *edgeOptions) { eo.redisAddr = rds.Addr() })
	expect(t, "before", e.get(t, "/r"), 200, httpcache.Miss, "ok")
	expect(t, "before", e.get(t, "/r"), 200, httpcache.Hit, "ok")

	if err := rds.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		start := time.Now()
		r := e.get(t, "/r")
		expect(t, fmt.Sprint("during outage ", i), r, 200, httpcache.Bypass, "ok")
		if took := time.Since(start); took > time.Second {
			t.Errorf("a bypassed request took %v", took)
		}
	}

	if err := rds.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Redis came back empty; the store is tried again after RetryAfter.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := localenv.Poll(ctx, 20*time.Millisecond, func(context.Context) error {
		if got := e.get(t, "/r").xcache(); got != httpcache.Hit {
			return fmt.Errorf("X-Cache %s", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("caching to resume: %v", err)
	}
}

func TestPurgeByTagAndOncePerEvent(t *testing.T) {
	var version atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Surrogate-Key", "item:"+strings.TrimPrefix(r.URL.Path, "/items/")+" items")
		_, _ = fmt.Fprintf(w, "v%d", version.Load())
	})
	e := newEdge(t, o)
	ctx := context.Background()
	expect(t, "item 1", e.get(t, "/items/1"), 200, httpcache.Miss, "v0")
	expect(t, "item 2", e.get(t, "/items/2"), 200, httpcache.Miss, "v0")
	version.Store(1)

	deleted, applied, err := e.store.PurgeOnce(ctx, "event-1", time.Hour, "item:1")
	if err != nil || !applied || deleted == 0 {
		t.Fatalf("first purge: deleted %d applied %v err %v", deleted, applied, err)
	}
	expect(t, "purged item", e.get(t, "/items/1"), 200, httpcache.Miss, "v1")
	expect(t, "other item", e.get(t, "/items/2"), 200, httpcache.Hit, "v0")

	// The same event again purges nothing: item 1 stays cached.
	version.Store(2)
	deleted, applied, err = e.store.PurgeOnce(ctx, "event-1", time.Hour, "item:1")
	if err != nil || applied || deleted != 0 {
		t.Fatalf("duplicate purge: deleted %d applied %v err %v", deleted, applied, err)
	}
	expect(t, "after duplicate", e.get(t, "/items/1"), 200, httpcache.Hit, "v1")

	if _, err := e.store.Purge(ctx, "items"); err != nil {
		t.Fatal(err)
	}
	expect(t, "list tag purged 1", e.get(t, "/items/1"), 200, httpcache.Miss, "v2")
	expect(t, "list tag purged 2", e.get(t, "/items/2"), 200, httpcache.Miss, "v2")
}

// A response fetched before a purge must not be stored after it, or the
// purge would be undone by a request that was already in flight.
func TestResponseFetchedBeforeAPurgeIsNotStored(t *testing.T) {
	inOrigin := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			close(inOrigin)
			<-release
		}
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Surrogate-Key", "thing")
		_, _ = fmt.Fprintf(w, "call %d", calls.Load())
	})
	e := newEdge(t, o)
	done := make(chan result, 1)
	go func() {
		r, _ := e.send(http.MethodGet, "/t")
		done <- r
	}()
	<-inOrigin
	if _, err := e.store.Purge(context.Background(), "thing"); err != nil {
		t.Fatal(err)
	}
	close(release)
	expect(t, "in flight", <-done, 200, httpcache.Miss, "call 1")
	expect(t, "after", e.get(t, "/t"), 200, httpcache.Miss, "call 2")
	expect(t, "stored", e.get(t, "/t"), 200, httpcache.Hit, "call 2")
}

func TestUnsafeRequestInvalidatesItsPath(t *testing.T) {
	var version atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			version.Add(1)
			w.Header().Set("Cache-Control", "no-store")
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = fmt.Fprintf(w, "v%d", version.Load())
	})
	e := newEdge(t, o)
	expect(t, "get", e.get(t, "/doc"), 200, httpcache.Miss, "v0")
	expect(t, "get", e.get(t, "/doc"), 200, httpcache.Hit, "v0")
	r, err := e.send(http.MethodPut, "/doc")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "put", r, 200, httpcache.Bypass, "")
	expect(t, "get after put", e.get(t, "/doc"), 200, httpcache.Miss, "v1")
}

func TestUnknownUpstreamIsAProblem(t *testing.T) {
	o := newOrigin(t, fixed("x"))
	e := newEdge(t, o)
	req, _ := http.NewRequest(http.MethodGet, e.url+"/x", nil)
	req.Header.Set(contract.HeaderUpstream, "nosuch")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("got %d %s, want 502 problem", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// A miss that looked up after a purge must not join a fetch that started
// before it: that fetch may return the data the purge replaced.
func TestMissAfterAPurgeDoesNotJoinAnEarlierFetch(t *testing.T) {
	inOrigin := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) {
		n := calls.Add(1)
		if n == 1 {
			close(inOrigin)
			<-release
		}
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Surrogate-Key", "thing")
		_, _ = fmt.Fprintf(w, "call %d", n)
	})
	e := newEdge(t, o)
	first := make(chan result, 1)
	go func() {
		r, _ := e.send(http.MethodGet, "/t")
		first <- r
	}()
	<-inOrigin // the first fetch is under way, with the old data
	if _, err := e.store.Purge(context.Background(), "thing"); err != nil {
		t.Fatal(err)
	}
	second := make(chan result, 1)
	go func() {
		r, _ := e.send(http.MethodGet, "/t")
		second <- r
	}()
	select {
	case r := <-second:
		expect(t, "after the purge", r, 200, httpcache.Miss, "call 2")
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatalf("the request after the purge waited for the fetch started before it; it got %q", (<-second).body)
	}
	close(release)
	expect(t, "before the purge", <-first, 200, httpcache.Miss, "call 1")
	expect(t, "stored", e.get(t, "/t"), 200, httpcache.Hit, "call 2")
}

func TestHeadIsAnsweredFromTheStoredGet(t *testing.T) {
	o := newOrigin(t, fixed("body", "Cache-Control", "public, max-age=60", "Content-Type", "text/plain"))
	e := newEdge(t, o)
	r, err := e.send(http.MethodHead, "/h")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "head miss", r, 200, httpcache.Miss, "")
	expect(t, "get", e.get(t, "/h"), 200, httpcache.Miss, "body")
	r, err = e.send(http.MethodHead, "/h")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "head hit", r, 200, httpcache.Hit, "")
	if r.header.Get("Content-Type") != "text/plain" {
		t.Errorf("HEAD Content-Type %q", r.header.Get("Content-Type"))
	}
}

// What is per request or per hop is never replayed from the cache.
func TestStoredHeadersAreTheRepresentationsOnly(t *testing.T) {
	o := newOrigin(t, fixed("x", "Cache-Control", "public, max-age=60", "X-Request-Id", "origin-id",
		"Surrogate-Key", "a b", "Connection", "X-Hop", "X-Hop", "secret", "Link", "</next>; rel=\"next\"",
		// A traced origin's span context names the trace of the request
		// that filled the cache, not of the one a hit answers.
		"Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "Tracestate", "v=1"))
	e := newEdge(t, o)
	e.get(t, "/s")
	r := e.get(t, "/s", "X-Request-Id", "client-id")
	expect(t, "hit", r, 200, httpcache.Hit, "x")
	if r.header.Get("X-Request-Id") != "client-id" {
		t.Errorf("X-Request-Id %q, want the request's own", r.header.Get("X-Request-Id"))
	}
	for _, h := range []string{"Surrogate-Key", "X-Hop", "Traceparent", "Tracestate"} {
		if v := r.header.Get(h); v != "" {
			t.Errorf("%s replayed: %q", h, v)
		}
	}
	if r.header.Get("Link") != `</next>; rel="next"` {
		t.Errorf("Link %q", r.header.Get("Link"))
	}
}

// When the origin starts varying on a header, the index follows it.
func TestVaryChangesAreFollowed(t *testing.T) {
	var vary atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		if vary.Load() {
			w.Header().Set("Vary", "Accept-Language")
		}
		_, _ = fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	e := newEdge(t, o)
	expect(t, "no vary", e.get(t, "/v", "Accept-Language", "en"), 200, httpcache.Miss, "lang=en")
	expect(t, "no vary hit", e.get(t, "/v", "Accept-Language", "fr"), 200, httpcache.Hit, "lang=en")
	vary.Store(true)
	if _, err := e.store.Purge(context.Background(), "uri:svc:/v"); err != nil {
		t.Fatal(err)
	}
	expect(t, "fr", e.get(t, "/v", "Accept-Language", "fr"), 200, httpcache.Miss, "lang=fr")
	expect(t, "en", e.get(t, "/v", "Accept-Language", "en"), 200, httpcache.Miss, "lang=en")
	expect(t, "fr hit", e.get(t, "/v", "Accept-Language", "fr"), 200, httpcache.Hit, "lang=fr")
	expect(t, "en hit", e.get(t, "/v", "Accept-Language", "en"), 200, httpcache.Hit, "lang=en")
}
