package system_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// With Redis stopped, cached routes still answer 200, with X-Cache:
// BYPASS; once it is back, caching resumes (MISS, then HIT). The
// rate-limit service loses its Redis too and the ingress lets requests
// pass (fail open).
func TestCachedRoutesSurviveRedisOutage(t *testing.T) {
	p, etag := createProduct(t, sys.alice, "Outage "+randomHex(4))
	token := sys.alice.Token
	paths := []string{productPath(p.ID), "/api/products/products?limit=5"}
	for _, path := range paths {
		localenvtest.Eventually(t, 10*time.Second, 100*time.Millisecond, path+" cached", func(context.Context) error {
			if r := expect(t, http.StatusOK, request{method: http.MethodGet, path: path, token: token}); r.xcache() != "HIT" {
				return fmt.Errorf("X-Cache %q", r.xcache())
			}
			return nil
		})
	}

	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := sys.redis.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	// Whatever happens below, later tests need Redis back.
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := sys.redis.Start(ctx); err != nil {
				t.Errorf("restart redis: %v", err)
			}
		}
	})

	var slowest time.Duration
	failOpen := true // no request was counted by the rate-limit service
	for i := range 20 {
		for _, path := range paths {
			r := expect(t, http.StatusOK, request{method: http.MethodGet, path: path, token: token})
			if r.xcache() != "BYPASS" {
				t.Errorf("request %d to %s without Redis: X-Cache %q, want BYPASS", i, path, r.xcache())
			}
			slowest = max(slowest, r.took)
			if r.header.Get("X-Ratelimit-Remaining") != "" {
				failOpen = false
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Logf("without Redis: %d requests, all 200 BYPASS, slowest %v; rate limits failed open: %v", 20*len(paths), slowest.Round(100*time.Microsecond), failOpen)

	// Events keep coming while Redis is away: their purges fail and are
	// requeued, not lost.
	failedBefore := edgeMetric(t, "edge_purge_events_total", `result="failed"`)
	appliedBefore := appliedPurges(t)
	newName := p.Name + " v2"
	expect(t, http.StatusOK, request{method: http.MethodPut, path: productPath(p.ID), token: token,
		header: map[string]string{"If-Match": etag}, body: fmt.Sprintf(`{"name": %q}`, newName)})
	localenvtest.Eventually(t, 20*time.Second, 100*time.Millisecond, "a purge to fail without Redis", func(context.Context) error {
		if n := edgeMetric(t, "edge_purge_events_total", `result="failed"`); n <= failedBefore {
			return fmt.Errorf("%v failed purges", n)
		}
		return nil
	})

	startCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := sys.redis.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	back := time.Now()
	waitPurgesAfter(t, appliedBefore, "the requeued event to be applied")
	// The restarted Redis is empty: each path is a MISS, then a HIT.
	for _, path := range paths {
		var seen []string
		localenvtest.Eventually(t, 10*time.Second, 50*time.Millisecond, path+": MISS then HIT after Redis returned", func(context.Context) error {
			r := expect(t, http.StatusOK, request{method: http.MethodGet, path: path, token: token})
			seen = append(seen, r.xcache())
			n := len(seen)
			if n >= 2 && seen[n-2] == "MISS" && seen[n-1] == "HIT" {
				return nil
			}
			return fmt.Errorf("X-Cache so far %v", seen)
		})
		t.Logf("%s after Redis returned: %v", path, seen)
	}
	t.Logf("caching resumed %v after Redis answered again", time.Since(back).Round(time.Millisecond))
	if r := expect(t, http.StatusOK, request{method: http.MethodGet, path: paths[0], token: token}); decode[product](t, r.body).Name != newName {
		t.Errorf("after the outage the item shows %s, want the name %q", r, newName)
	}

	// The global limits count again: the rate-limit service answers (its
	// X-RateLimit-Remaining header) instead of the ingress failing open.
	localenvtest.Eventually(t, 15*time.Second, 200*time.Millisecond, "the rate-limit service to count again", func(context.Context) error {
		r := expect(t, http.StatusOK, request{method: http.MethodGet, path: paths[0], token: token})
		if r.header.Get("X-Ratelimit-Remaining") == "" {
			return fmt.Errorf("no X-RateLimit-Remaining: %v", r.header)
		}
		return nil
	})
	t.Logf("global rate limits counted again %v after Redis answered again", time.Since(back).Round(time.Millisecond))
}
