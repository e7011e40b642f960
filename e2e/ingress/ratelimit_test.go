package ingress_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// TestLocalRateLimit: a burst over a route's bucket gets 429 problems with
// Retry-After and rate-limit headers, and the route recovers once the
// bucket refills.
func TestLocalRateLimit(t *testing.T) {
	const (
		burst    = 3
		perFill  = 1
		interval = 2 * time.Second
	)
	useDocument(t, func(d *edgeconfig.Document) {
		for i := range d.Routes {
			if d.Routes[i].Name == "users-jwks" {
				d.Routes[i].RateLimit = &edgeconfig.RateLimit{Local: &edgeconfig.TokenBucket{
					Requests: perFill, Per: edgeconfig.Duration(interval), Burst: burst,
				}}
			}
		}
	})
	var limited response
	ok := 0
	start := time.Now()
	for range 10 {
		r := get(t, "/api/users/.well-known/jwks.json", nil)
		switch r.Status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited = r
		default:
			t.Fatalf("unexpected status %d: %s", r.Status, r.Body)
		}
	}
	// Envoy refills on a timer whose phase the test does not know, so a
	// fill may land inside the burst: allow one fill per interval begun.
	fills := int(time.Since(start)/interval) + 1
	if allowed := burst + fills*perFill; ok > allowed || limited.Status == 0 {
		t.Fatalf("%d of 10 requests passed a bucket of %d (at most %d allowed with %d refill(s))", ok, burst, allowed, fills)
	}
	requireProblem(t, limited, http.StatusTooManyRequests, "urn:portico:problem:rate-limited")
	if ra, err := strconv.Atoi(limited.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", limited.Header.Get("Retry-After"))
	}
	if limited.Header.Get("X-Ratelimit-Limit") == "" {
		t.Fatalf("no X-RateLimit-Limit header: %v", limited.Header)
	}
	localenvtest.Eventually(t, 5*time.Second, 50*time.Millisecond, "bucket refilled", func(context.Context) error {
		if r := get(t, "/api/users/.well-known/jwks.json", nil); r.Status != http.StatusOK {
			return errStatus(r)
		}
		return nil
	})
}

// TestGlobalRateLimitSharedByIngresses: two ingress Envoys, each fed by
// its own control plane, count one limit in the shared rate-limit
// service: together they let through exactly the limit.
func TestGlobalRateLimitSharedByIngresses(t *testing.T) {
	const limit = 10
	useDocument(t, func(d *edgeconfig.Document) {
		for i := range d.Routes {
			if d.Routes[i].Name == "users-jwks" {
				// Counters are kept per route name and window: a name of
				// its own starts this test from zero.
				d.Routes[i].Name = fmt.Sprintf("jwks-shared-%d", time.Now().UnixNano())
				d.Routes[i].RateLimit = &edgeconfig.RateLimit{Global: &edgeconfig.GlobalLimits{
					PerClient: &edgeconfig.Limit{Requests: limit, Per: "minute"},
				}}
			}
		}
	})
	second := startSecondIngress(t)
	// The service counts in fixed minute windows: stay clear of a boundary.
	if s := time.Now().Second(); s > 50 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	var passed, limited int
	for i := range 2 * limit {
		base := env.ingressURL
		if i%2 == 1 {
			base = second
		}
		r := call(t, base, http.MethodGet, "/api/users/.well-known/jwks.json", nil, "")
		switch r.Status {
		case http.StatusOK:
			passed++
		case http.StatusTooManyRequests:
			limited++
			requireProblem(t, r, http.StatusTooManyRequests, "urn:portico:problem:rate-limited")
		default:
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
	}
	// Each Envoy saw only `limit` requests: had each counted alone, all
	// would have passed.
	if passed != limit || limited != limit {
		t.Fatalf("passed %d and limited %d of %d, want %d each", passed, limited, 2*limit, limit)
	}
}

// startSecondIngress runs a second control plane and Envoy with its own
// listener, sharing Consul and the rate-limit service; it returns the
// second ingress's base URL.
func startSecondIngress(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A stack of the test's own stops the second pair when it ends.
	st, err := stack.New(stack.Config{Root: env.stack.Root(), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := st.Stop(ctx); err != nil {
			t.Errorf("stop the second ingress: %v", err)
		}
	})
	cp, err := st.RunControlPlane(ctx, controlPlaneConfig("controlplane-2", env.rateLimitPort))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.StartIngress(ctx, ingressConfig("ingress-2", cp)); err != nil {
		t.Fatal(err)
	}
	return cp.IngressURL()
}

// TestGlobalLimitsFailOpen: when the rate-limit service or its Redis is
// down, requests pass (the documented choice: a counter outage must not
// take the API down), and the local buckets keep bounding each instance.
func TestGlobalLimitsFailOpen(t *testing.T) {
	useDocument(t, func(d *edgeconfig.Document) {
		for i := range d.Routes {
			if d.Routes[i].Name == "users-jwks" {
				d.Routes[i].Name = fmt.Sprintf("jwks-fail-open-%d", time.Now().UnixNano())
				d.Routes[i].RateLimit = &edgeconfig.RateLimit{
					Local:  &edgeconfig.TokenBucket{Requests: 1000, Per: edgeconfig.Duration(time.Second), Burst: 1000},
					Global: &edgeconfig.GlobalLimits{PerClient: &edgeconfig.Limit{Requests: 1000, Per: "minute"}},
				}
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	requireServed := func(when string) {
		t.Helper()
		for range 5 {
			if r := get(t, "/api/users/.well-known/jwks.json", nil); r.Status != http.StatusOK {
				t.Fatalf("%s: status %d: %s", when, r.Status, r.Body)
			}
		}
	}
	requireServed("all up")
	// Envoy counts the requests it let through because the service could
	// not answer: proof that the fail-open path, not luck, served them.
	allowed := func() int { return envoyStat(t, "cluster.users.ratelimit.ingress_ratelimit.failure_mode_allowed") }
	base := allowed()

	if err := env.redis.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	requireServed("Redis down")
	afterRedis := allowed()
	if afterRedis == base {
		t.Fatal("no request was let through in failure mode while Redis was down")
	}
	if err := env.redis.Start(ctx); err != nil {
		t.Fatal(err)
	}

	if err := env.rateLimit.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.rateLimit.Start(context.Background()); err != nil {
			t.Errorf("restart the rate-limit service: %v", err)
		}
	})
	requireServed("rate-limit service down")
	if allowed() == afterRedis {
		t.Fatal("no request was let through in failure mode while the rate-limit service was down")
	}
}
