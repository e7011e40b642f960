package ingress_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/problem"
)

// internals are words a reply's detail must not contain: which instance,
// connection or filter failed is for the access log, never for a client.
var internals = []string{"upstream", "reset", "cluster", "127.0.0.1", "envoy", "connection", "rbac", "filter"}

// TestIngressRepliesAreProblems: every answer the ingress gives itself, and
// every error a sidecar gives in its service's place, is an RFC 9457
// problem with the status's stable type (problem.TypeFor, as the services
// use), a title, a detail that names no internals, and Cache-Control:
// no-store; a 405 names the allowed methods and a 401 the challenge. The
// 429s are held to the same in TestEvery429CarriesRetryAfter (with
// Retry-After) and the hidden paths' 404 in TestOperationalEndpointsHidden.
func TestIngressRepliesAreProblems(t *testing.T) {
	const routeTimeout = time.Second
	useDocument(t, func(d *edgeconfig.Document) {
		for i := range d.Routes {
			if d.Routes[i].Name == "products" {
				timeout := edgeconfig.Duration(routeTimeout)
				d.Routes[i].Timeout = &timeout
			}
		}
		// A path served for GET only, with nothing behind it for the
		// other methods.
		d.Routes = append(d.Routes, edgeconfig.Route{
			Name: "keys-read-only", Path: "/keys", Methods: []string{http.MethodGet},
			Service: "users", Rewrite: "/.well-known/jwks.json", Public: true,
		})
	})
	// The document is acknowledged; its route serves.
	localenvtest.Eventually(t, 10*time.Second, 50*time.Millisecond, "the read-only route serves", func(context.Context) error {
		if r := get(t, "/keys", nil); r.Status != http.StatusOK {
			return errStatus(r)
		}
		return nil
	})
	tok := validToken(t)
	auth := "Authorization: Bearer " + tok + "\r\n"
	cases := []struct {
		name   string
		send   func(t *testing.T) response
		status int
		// header are headers the reply must carry, with their values.
		header map[string]string
	}{
		{name: "no route", status: 404, send: func(t *testing.T) response { return get(t, "/nowhere", nil) }},
		{name: "no route, with a token", status: 404, send: func(t *testing.T) response { return get(t, "/api", bearer(tok)) }},
		{name: "method not allowed", status: 405, header: map[string]string{"Allow": "GET"}, send: func(t *testing.T) response {
			return call(t, env.ingressURL, http.MethodPost, "/keys", nil, "")
		}},
		// The HTTP/1 codec lets any method through (allow_custom_methods);
		// the routes answer one they never route.
		{name: "a method the ingress does not route", status: 405, header: map[string]string{"Allow": "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"}, send: func(t *testing.T) response {
			return call(t, env.ingressURL, "QUERY", "/api/users/users/42", bearer(tok), "{}")
		}},
		{name: "a made-up method on a read-only path", status: 405, header: map[string]string{"Allow": "GET"}, send: func(t *testing.T) response {
			return call(t, env.ingressURL, "FOO", "/keys", nil, "")
		}},
		{name: "token missing", status: 401, send: func(t *testing.T) response { return get(t, "/api/users/users/1", nil) }},
		{name: "token expired", status: 401, send: func(t *testing.T) response {
			return get(t, "/api/users/users/1", bearer(signedByTestKey(t, claims(func(c jwt.MapClaims) {
				c["exp"] = time.Now().Add(-2 * time.Minute).Unix()
			}))))
		}},
		{name: "token for another audience", status: 401, header: map[string]string{"WWW-Authenticate": `Bearer error="invalid_token"`}, send: func(t *testing.T) response {
			return get(t, "/api/users/users/1", bearer(signedByTestKey(t, claims(func(c jwt.MapClaims) { c["aud"] = []string{"other"} }))))
		}},
		{name: "headers too large", status: 431, send: func(t *testing.T) response {
			return get(t, "/api/users/.well-known/jwks.json", map[string]string{"X-Filler": strings.Repeat("a", 70<<10)})
		}},
		{name: "body too large", status: 413, send: func(t *testing.T) response {
			return sendRaw(t, fmt.Sprintf("POST /api/users/login HTTP/1.1\r\nHost: ingress\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", contract.MaxRequestBody+1))
		}},
		{name: "malformed header line", status: 400, send: func(t *testing.T) response {
			return sendRaw(t, "GET /api/users/.well-known/jwks.json HTTP/1.1\r\nHost: ingress\r\nno colon here\r\n\r\n")
		}},
		{name: "header name with underscores", status: 400, send: func(t *testing.T) response {
			return get(t, "/api/users/.well-known/jwks.json", map[string]string{"X_Portico_User_Id": "1"})
		}},
		{name: "HTTP/1.0", status: 426, send: func(t *testing.T) response {
			return sendRaw(t, "GET /api/users/.well-known/jwks.json HTTP/1.0\r\nHost: ingress\r\n\r\n")
		}},
		{name: "no healthy instance", status: 503, send: func(t *testing.T) response {
			return get(t, "/api/products/products", bearer(tok))
		}},
		{name: "upstream timeout", status: 504, send: func(t *testing.T) response {
			products := startUpstream(t, "products")
			waitServing(t, tok, products)
			return sendRaw(t, "POST /api/products/products?delay=5s HTTP/1.1\r\nHost: ingress\r\n"+auth+"Content-Length: 2\r\n\r\n{}")
		}},
		{name: "request headers never finished", status: 408, send: func(t *testing.T) response {
			// The ingress waits 10 s (RequestHeadersTimeout) for the rest.
			return sendRaw(t, "GET /api/users/.well-known/jwks.json HTTP/1.1\r\nHost: ingress\r\nX-Slow: ")
		}},
		{name: "a service's plain-text 401", status: 401, send: func(t *testing.T) response {
			return get(t, "/api/users/users/42?status=401", bearer(tok))
		}},
		{name: "a service's plain-text 500", status: 500, send: func(t *testing.T) response {
			return get(t, "/api/users/users/42?status=500", bearer(tok))
		}},
		{name: "instance gone behind its sidecar", status: 503, send: func(t *testing.T) response {
			products := startUpstream(t, "products")
			waitServing(t, tok, products)
			_ = products.server.Close() // the sidecar stays, healthy in Consul, and answers for it
			return call(t, env.ingressURL, http.MethodPost, "/api/products/products", bearer(tok), "{}")
		}},
	}
	var rows []string
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			r := c.send(t)
			requireProblem(t, r, c.status, problem.TypeFor(c.status))
			p := r.JSON(t)
			if p["title"] != http.StatusText(c.status) {
				t.Errorf("title %v, want %q", p["title"], http.StatusText(c.status))
			}
			detail, _ := p["detail"].(string)
			if detail == "" {
				t.Errorf("no detail: %s", r.Body)
			}
			for _, word := range internals {
				if strings.Contains(strings.ToLower(detail), word) {
					t.Errorf("the detail names internals (%q): %q", word, detail)
				}
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			for k, v := range c.header {
				if got := r.Header.Get(k); got != v {
					t.Errorf("%s %q, want %q", k, got, v)
				}
			}
			rows = append(rows, fmt.Sprintf("%-34s %d  %-40s %s", c.name, r.Status, p["type"], detail))
		})
	}
	// A service's own problem passes untouched, detail and all.
	r := get(t, "/api/users/users/42?status=409&problem=1", bearer(tok))
	requireProblem(t, r, http.StatusConflict, problem.TypeConflict)
	if d := r.JSON(t)["detail"]; d != "said by the service" {
		t.Errorf("a service's problem was rewritten: %s", r.Body)
	}
	t.Logf("the ingress's own replies:\n%-34s %s  %-40s %s\n%s", "case", "status", "type", "detail", strings.Join(rows, "\n"))
}
