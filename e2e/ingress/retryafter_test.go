package ingress_test

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
)

// TestEvery429CarriesRetryAfter: whichever limit refuses a request, the
// per-instance token bucket (local_ratelimit) or the limit counted by the
// rate-limit service (the login limit's kind), the client gets the same
// rate-limited problem with a meaningful detail and a Retry-After of whole
// seconds within the limit's window.
func TestEvery429CarriesRetryAfter(t *testing.T) {
	const (
		bucketInterval = 3 * time.Second
		loginLimit     = 2
	)
	// Counters are kept per route name and window: a name of its own
	// starts the global count from zero.
	loginRoute := fmt.Sprintf("login-retry-after-%d", time.Now().UnixNano())
	useDocument(t, func(d *edgeconfig.Document) {
		for i := range d.Routes {
			switch d.Routes[i].Name {
			case "users-jwks":
				d.Routes[i].RateLimit = &edgeconfig.RateLimit{Local: &edgeconfig.TokenBucket{
					Requests: 1, Per: edgeconfig.Duration(bucketInterval), Burst: 1,
				}}
			case "users-login":
				d.Routes[i].Name = loginRoute
				d.Routes[i].RateLimit = &edgeconfig.RateLimit{Global: &edgeconfig.GlobalLimits{
					PerClient: &edgeconfig.Limit{Requests: loginLimit, Per: "minute"},
				}}
			}
		}
	})

	t.Run("local token bucket", func(t *testing.T) {
		limited := firstRefusal(t, func() response { return get(t, "/api/users/.well-known/jwks.json", nil) })
		requireRateLimited(t, limited, int(math.Ceil(bucketInterval.Seconds())))
	})

	t.Run("global limit", func(t *testing.T) {
		limited := firstRefusal(t, func() response {
			return call(t, env.ingressURL, http.MethodPost, "/api/users/login", map[string]string{"Content-Type": "application/json"}, `{}`)
		})
		requireRateLimited(t, limited, int(time.Minute.Seconds()))
		// The value is the service's: the seconds until its counting
		// window ends, which the filter also sends as X-RateLimit-Reset.
		if reset := limited.Header.Get("X-Ratelimit-Reset"); reset != limited.Header.Get("Retry-After") {
			t.Fatalf("Retry-After %q, X-RateLimit-Reset %q: want the same seconds", limited.Header.Get("Retry-After"), reset)
		}
	})
}

// firstRefusal sends requests until one is refused with 429; every other
// answer must be a 200. A limit's window may end during the loop and let
// a few more through, so it allows several windows' worth.
func firstRefusal(t *testing.T, send func() response) response {
	t.Helper()
	for range 20 {
		r := send()
		switch r.Status {
		case http.StatusTooManyRequests:
			return r
		case http.StatusOK:
		default:
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
	}
	t.Fatal("20 requests and none refused")
	return response{}
}

// requireRateLimited checks the 429 problem every refusal shares: a stable
// type, title and detail, and Retry-After as whole seconds (RFC 9110) of
// at least 1 and at most the limit's window.
func requireRateLimited(t *testing.T, r response, windowSeconds int) {
	t.Helper()
	requireProblem(t, r, http.StatusTooManyRequests, "urn:portico:problem:rate-limited")
	p := r.JSON(t)
	if p["title"] != "Too Many Requests" {
		t.Fatalf("problem title %v: %s", p["title"], r.Body)
	}
	if d, _ := p["detail"].(string); d == "" || d == "local_rate_limited" {
		t.Fatalf("problem detail %q says nothing a client can act on: %s", d, r.Body)
	}
	values := r.Header.Values("Retry-After")
	if len(values) != 1 {
		t.Fatalf("Retry-After %q, want one value; headers %v", values, r.Header)
	}
	seconds, err := strconv.Atoi(values[0])
	if err != nil || seconds < 1 || seconds > windowSeconds {
		t.Fatalf("Retry-After %q, want whole seconds in [1, %d]", values[0], windowSeconds)
	}
}
