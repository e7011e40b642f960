package ingress_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// seenRequest is what an upstream received: the proof of what the ingress
// forwarded (and, by absence, of what it did not).
type seenRequest struct {
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Header http.Header `json:"header"`
}

// upstream is one instance of a mesh service: an HTTP server on loopback,
// registered in Consul with a sidecar that fronts it. It records every
// request, can be told to fail or to answer late, and serves the test's JWKS (the ingress
// fetches keys from the "users" service).
type upstream struct {
	Service string
	ID      string
	Port    int
	// SidecarPort is the sidecar's public listener: the instance's
	// endpoint in the ingress's clusters.
	SidecarPort int
	Sidecar     *localenv.Sidecar
	server      *http.Server
	fail        atomic.Bool
	requests    atomic.Int64

	mu   sync.Mutex
	seen []seenRequest
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	u.mu.Lock()
	u.seen = append(u.seen, seenRequest{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone()})
	u.mu.Unlock()
	if u.fail.Load() {
		http.Error(w, "instance failing on purpose", http.StatusInternalServerError)
		return
	}
	// ?status=<code> answers with that error in plain text, as a sidecar
	// or a misbehaving service would; with &problem=1 as a problem, as
	// the services do.
	if code, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil {
		if r.URL.Query().Get("problem") != "" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, `{"type":"urn:portico:problem:conflict","title":"Conflict","status":%d,"detail":"said by the service"}`, code)
			return
		}
		http.Error(w, "plain text from upstream 10.0.0.7:8080", code)
		return
	}
	// ?delay=<duration> answers late: an upstream slower than its route's
	// timeout.
	if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if r.URL.Path == "/.well-known/jwks.json" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*testJWKS.Load())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"service": u.Service, "instance": u.ID, "path": r.URL.RequestURI()})
}

// Seen returns the requests received so far.
func (u *upstream) Seen() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

// newUpstream serves, registers and fronts one instance with a sidecar.
func newUpstream(ctx context.Context, service, id string) (*upstream, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{Service: service, ID: id, Port: ln.Addr().(*net.TCPAddr).Port}
	u.server = &http.Server{Handler: u, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = u.server.Serve(ln) }()

	sidecarPort, err := localenv.FreePort()
	if err != nil {
		return nil, errors.Join(err, u.Close(ctx))
	}
	u.SidecarPort = sidecarPort
	reg := &api.AgentServiceRegistration{
		ID: id, Name: service, Address: "127.0.0.1", Port: u.Port,
		// A TTL check the test controls; it starts passing so the
		// instance is healthy as soon as it is registered.
		Check: &api.AgentServiceCheck{CheckID: id + ":ttl", TTL: "10m", Status: api.HealthPassing},
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Port: sidecarPort,
			// The sidecar's health is what the ingress follows. A second
			// TTL check, set together with the service's, keeps it exactly
			// as healthy as its service. Not an alias check: Consul 1.22
			// sometimes leaves a new alias check critical, with no output,
			// until its aliased checks change or its one-minute refresh
			// (seen here about one run in four), and this check's never
			// change on their own.
			Checks: api.AgentServiceChecks{{CheckID: id + ":sidecar-ttl", TTL: "10m", Status: api.HealthPassing}},
		}},
	}
	if err := env.consulAPI.Agent().ServiceRegister(reg); err != nil {
		return nil, errors.Join(fmt.Errorf("register %s: %w", id, err), u.Close(ctx))
	}
	sc, err := localenv.StartSidecar(ctx, localenv.SidecarOptions{
		Consul: env.consul, SidecarFor: id, Dir: env.stack.Path("sidecars"),
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("sidecar for %s: %w", id, err), u.Close(ctx))
	}
	u.Sidecar = sc
	return u, nil
}

// Close deregisters the instance and stops its sidecar and server.
func (u *upstream) Close(ctx context.Context) error {
	var errs []error
	if u.Sidecar != nil {
		errs = append(errs, u.Sidecar.Stop(ctx))
	}
	errs = append(errs, env.consulAPI.Agent().ServiceDeregister(u.ID), u.server.Close())
	return errors.Join(errs...)
}

// startUpstream is newUpstream for one test, undone when it ends.
func startUpstream(t *testing.T, service string) *upstream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	u, err := newUpstream(ctx, service, fmt.Sprintf("%s-%s", service, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))+fmt.Sprint(env.instances.Add(1))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := u.Close(ctx); err != nil {
			t.Logf("close %s: %v", u.ID, err)
		}
	})
	return u
}

// setHealth passes or fails the instance's and its sidecar's TTL checks.
func (u *upstream) setHealth(t testing.TB, status string) {
	t.Helper()
	for _, check := range []string{u.ID + ":ttl", u.ID + ":sidecar-ttl"} {
		if err := env.consulAPI.Agent().UpdateTTL(check, "set by test", status); err != nil {
			t.Fatalf("check %s: %v", check, err)
		}
	}
}
