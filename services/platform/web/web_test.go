package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

var errGone = errors.New("thing is gone")

func newTestServer(t *testing.T, checks ...Check) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv := New(Config{
		Service:  "test",
		Registry: reg,
		Tracing:  telemetry.Tracing{Provider: noop.NewTracerProvider(), Propagator: propagation.TraceContext{}},
		Classify: func(err error) *problem.Problem {
			if errors.Is(err, errGone) {
				return problem.NotFound("that thing is gone")
			}
			return nil
		},
		Checks:    checks,
		BodyLimit: 64,
	})
	srv.Mount(
		Route{Method: http.MethodGet, Path: "/things/:id", Handler: func(c *fiber.Ctx) error {
			switch c.Params("id") {
			case "gone":
				return errGone
			case "secret":
				return errors.New("dial tcp 10.0.0.7:5432: password authentication failed")
			case "panic":
				panic("boom")
			}
			return c.JSON(fiber.Map{"id": c.Params("id")})
		}},
		Route{Method: http.MethodPost, Path: "/things", Handler: func(c *fiber.Ctx) error {
			return c.SendStatus(http.StatusCreated)
		}},
	)
	return srv, reg
}

func do(t *testing.T, srv *Server, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := srv.App().Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func decodeProblem(t *testing.T, resp *http.Response, body []byte) problem.Problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, problem.ContentType) {
		t.Fatalf("content type = %q, want %s; body %s", ct, problem.ContentType, body)
	}
	var p problem.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body %s: %v", body, err)
	}
	if p.Status != resp.StatusCode {
		t.Fatalf("problem status %d != response status %d", p.Status, resp.StatusCode)
	}
	return p
}

func TestErrorsBecomeProblems(t *testing.T) {
	srv, _ := newTestServer(t)
	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		status   int
		typ      string
		mustHide string
	}{
		{name: "unknown route", method: "GET", path: "/nope", status: 404, typ: problem.TypeNotFound},
		{name: "wrong method", method: "DELETE", path: "/things", status: 405, typ: problem.TypeMethodNotAllowed},
		{name: "classified business error", method: "GET", path: "/things/gone", status: 404, typ: problem.TypeNotFound},
		{name: "unknown error is hidden", method: "GET", path: "/things/secret", status: 500, typ: problem.TypeInternal, mustHide: "password"},
		{name: "panic", method: "GET", path: "/things/panic", status: 500, typ: problem.TypeInternal, mustHide: "boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			resp, body := do(t, srv, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			p := decodeProblem(t, resp, body)
			if p.Type != tc.typ {
				t.Errorf("type = %q, want %q", p.Type, tc.typ)
			}
			if p.Instance != tc.path {
				t.Errorf("instance = %q, want %q", p.Instance, tc.path)
			}
			if p.RequestID == "" || p.RequestID != resp.Header.Get(HeaderRequestID) {
				t.Errorf("request id %q does not match header %q", p.RequestID, resp.Header.Get(HeaderRequestID))
			}
			if tc.mustHide != "" && strings.Contains(string(body), tc.mustHide) {
				t.Errorf("internal detail %q leaked: %s", tc.mustHide, body)
			}
		})
	}
}

// An oversized body is refused by the HTTP server before any middleware
// runs, so this goes over a real connection.
func TestOversizedBodyIsAProblem(t *testing.T) {
	srv, _ := newTestServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	resp, err := http.Post("http://"+ln.Addr().String()+"/things", "application/json", strings.NewReader(strings.Repeat("x", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413: %s", resp.StatusCode, body)
	}
	if p := decodeProblem(t, resp, body); p.Type != problem.TypeTooLarge {
		t.Errorf("type = %q, want %q", p.Type, problem.TypeTooLarge)
	}
}

func TestRequestIDIsPropagated(t *testing.T) {
	srv, _ := newTestServer(t)
	req := httptest.NewRequest("GET", "/things/1", nil)
	req.Header.Set(HeaderRequestID, "edge-assigned-id")
	resp, _ := do(t, srv, req)
	if got := resp.Header.Get(HeaderRequestID); got != "edge-assigned-id" {
		t.Fatalf("request id = %q, want the one the ingress sent", got)
	}
}

func TestMetricsUseRouteTemplates(t *testing.T) {
	srv, reg := newTestServer(t)
	for _, p := range []string{"/things/1", "/things/2", "/things/gone", "/things/panic", "/elsewhere"} {
		do(t, srv, httptest.NewRequest("GET", p, nil))
	}
	tests := []struct {
		route, status string
		want          float64
	}{
		{"/things/:id", "200", 2},
		{"/things/:id", "404", 1},
		{"/things/:id", "500", 1},
		{unmatchedRoute, "404", 1},
	}
	metrics := newHTTPMetricsView(t, reg)
	for _, tc := range tests {
		if got := metrics(tc.route, tc.status); got != tc.want {
			t.Errorf("http_requests_total{route=%q,status=%q} = %v, want %v", tc.route, tc.status, got, tc.want)
		}
	}
	// In-flight returns to zero once requests finish.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "http_requests_in_flight" {
			continue
		}
		for _, m := range f.GetMetric() {
			if v := m.GetGauge().GetValue(); v != 0 {
				t.Errorf("in-flight gauge %v = %v after all requests finished", m.GetLabel(), v)
			}
		}
	}
}

// newHTTPMetricsView reads http_requests_total for GET by route and status.
func newHTTPMetricsView(t *testing.T, reg *prometheus.Registry) func(route, status string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return func(route, status string) float64 {
		for _, f := range families {
			if f.GetName() != "http_requests_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["method"] == "GET" && labels["route"] == route && labels["status"] == status {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
}

func TestReadiness(t *testing.T) {
	failing := func(context.Context) error { return errors.New("connection refused") }
	ok := func(context.Context) error { return nil }
	tests := []struct {
		name   string
		checks []Check
		status int
		state  string
	}{
		{"all ok", []Check{{Name: "database", Critical: true, Probe: ok}, {Name: "broker", Probe: ok}}, 200, "ready"},
		{"optional down", []Check{{Name: "database", Critical: true, Probe: ok}, {Name: "broker", Probe: failing}}, 200, "degraded"},
		{"critical down", []Check{{Name: "database", Critical: true, Probe: failing}, {Name: "broker", Probe: ok}}, 503, "unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newTestServer(t, tc.checks...)
			resp, body := do(t, srv, httptest.NewRequest("GET", "/readyz", nil))
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var r readiness
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.state {
				t.Errorf("state = %q, want %q", r.Status, tc.state)
			}
			if len(r.Checks) != len(tc.checks) {
				t.Errorf("checks = %v, want one entry per check", r.Checks)
			}
		})
	}
}

func TestChildReferenceResolvesUnderTheClientsPath(t *testing.T) {
	for _, tt := range []struct{ served, client, want string }{
		{"/products", "https://x.example/api/products/products", "/api/products/products/7"},
		{"/products/", "https://x.example/api/products/products/", "/api/products/products/7"},
		{"/users", "http://127.0.0.1:1/users", "/users/7"},
	} {
		base, err := url.Parse(tt.client)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := url.Parse(ChildReference(tt.served, "7"))
		if err != nil {
			t.Fatal(err)
		}
		if got := base.ResolveReference(ref).Path; got != tt.want {
			t.Errorf("served %s, client %s: resolves to %s, want %s", tt.served, tt.client, got, tt.want)
		}
	}
}

// A server whose context ends before it has begun serving still returns
// (it used to serve on forever when Shutdown ran first), and frees its
// port.
func TestServeReturnsWhenStoppedBeforeServing(t *testing.T) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- New(Config{Service: "test"}).Serve(ctx, ln, time.Second) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after its context ended")
		}
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Fatal("the port still accepts connections")
		}
	}
}
