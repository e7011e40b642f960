package registry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/registry"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Consul))
}

// readyServer serves /readyz with 200 while ready is true.
func readyServer(t *testing.T) (port int, setReady func(bool)) {
	t.Helper()
	var mu sync.Mutex
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/readyz" && ready {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	port = srv.Listener.Addr().(*net.TCPAddr).Port
	return port, func(v bool) { mu.Lock(); ready = v; mu.Unlock() }
}

// run starts r.Run and stops it at cleanup.
func run(t *testing.T, r *registry.Registrar) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// waitFor polls check until it returns nil, failing the test with its
// last error after d.
func waitFor(t *testing.T, d time.Duration, check func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if err := localenv.Poll(ctx, 50*time.Millisecond, func(context.Context) error { return check() }); err != nil {
		t.Fatal(err)
	}
}

// hasStatus checks that the agent reports status for id.
func hasStatus(client *api.Client, id, want string) func() error {
	return func() error {
		s, _, err := client.Agent().AgentHealthServiceByID(id)
		if err != nil {
			return err
		}
		if s != want {
			return fmt.Errorf("%s is %s, want %s", id, s, want)
		}
		return nil
	}
}

// attemptCounter counts the registrar's failed attempts from its logs.
type attemptCounter struct{ failed atomic.Int64 }

func (c *attemptCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *attemptCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *attemptCounter) WithGroup(string) slog.Handler            { return c }
func (c *attemptCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && strings.Contains(r.Message, "registration failed") {
		c.failed.Add(1)
	}
	return nil
}

func TestRegisterAndDeregister(t *testing.T) {
	t.Parallel()
	client := localenvtest.ConsulClient(t)
	port, setReady := readyServer(t)
	name := "reg-" + strconv.Itoa(port)
	r, err := registry.New(registry.Config{
		ConsulAddr: "http://" + localenvtest.ConsulAddr(t), Name: name, Address: "127.0.0.1", Port: port,
		Version: "1.2.3", Tags: []string{"a"}, OpenAPIPath: "/openapi.json",
		CheckInterval: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if want := name + "-" + host + "-" + strconv.Itoa(port); r.ID() != want {
		t.Errorf("ID = %q, want %q", r.ID(), want)
	}
	run(t, r)

	waitFor(t, 10*time.Second, hasStatus(client, r.ID(), api.HealthPassing))
	svc, _, err := client.Agent().Service(r.ID(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Service != name || svc.Address != "127.0.0.1" || svc.Port != port ||
		svc.Meta["version"] != "1.2.3" || svc.Meta["openapi"] != "/openapi.json" || len(svc.Tags) != 1 {
		t.Errorf("registered %+v", svc)
	}
	proxy, _, err := client.Agent().Service(r.SidecarID(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if proxy.Kind != api.ServiceKindConnectProxy || proxy.Proxy.DestinationServiceID != r.ID() || proxy.Port == 0 {
		t.Errorf("sidecar %+v", proxy)
	}
	checks, err := client.Agent().ChecksWithFilter("ServiceID == " + strconv.Quote(r.ID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if c.Type != "http" || !strings.Contains(c.Output, "/readyz") {
			t.Errorf("service check %+v", c)
		}
	}

	// An unready instance turns critical, and so does its sidecar (alias).
	setReady(false)
	waitFor(t, 10*time.Second, hasStatus(client, r.ID(), api.HealthCritical))
	waitFor(t, 10*time.Second, hasStatus(client, r.SidecarID(), api.HealthCritical)) // the sidecar follows
	setReady(true)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{r.ID(), r.SidecarID()} {
		if _, _, err := client.Agent().Service(id, nil); !isNotFound(err) {
			t.Errorf("%s after Deregister: %v", id, err)
		}
	}
	// Deregistering twice is fine.
	if err := r.Deregister(ctx); err != nil {
		t.Errorf("second Deregister: %v", err)
	}
}

func TestFixedSidecarPortAndID(t *testing.T) {
	t.Parallel()
	client := localenvtest.ConsulClient(t)
	port, _ := readyServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sidecarPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	id := "fixed-" + strconv.Itoa(port)
	r, err := registry.New(registry.Config{
		ConsulAddr: localenvtest.ConsulAddr(t), Name: "fixed", ID: id, Address: "127.0.0.1", Port: port, SidecarPort: sidecarPort,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	waitFor(t, 10*time.Second, func() error {
		proxy, _, err := client.Agent().Service(id+"-sidecar-proxy", nil)
		if err != nil {
			return err
		}
		if proxy.Port != sidecarPort {
			return fmt.Errorf("sidecar registered on port %d, want %d", proxy.Port, sidecarPort)
		}
		return nil
	})
	t.Cleanup(func() { _ = r.Deregister(context.Background()) })
}

// TestStartOrderAndAgentRestart starts the registrar before its agent and
// restarts the agent (which forgets everything): the instance ends up
// registered both times.
func TestStartOrderAndAgentRestart(t *testing.T) {
	t.Parallel()
	consul := localenvtest.StartConsul(t)
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := consul.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	port, _ := readyServer(t)
	attempts := &attemptCounter{}
	r, err := registry.New(registry.Config{
		ConsulAddr: consul.HTTPAddr(), Name: "late", Address: "127.0.0.1", Port: port,
		Resync: 200 * time.Millisecond, CheckInterval: 200 * time.Millisecond,
		Log: slog.New(attempts),
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	// The registrar keeps trying while the agent is down: wait for a few
	// failed attempts (200ms, 400ms, 800ms apart at most).
	waitFor(t, 15*time.Second, func() error {
		if n := attempts.failed.Load(); n < 3 {
			return fmt.Errorf("%d failed registration attempts while the agent was down, want at least 3", n)
		}
		return nil
	})
	if err := consul.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	client, err := consul.Client()
	if err != nil {
		t.Fatal(err)
	}
	registered := func() error {
		_, _, err := client.Agent().Service(r.ID(), nil)
		return err
	}
	// Backoff is at most 10 s after many failures; here a few hundred ms.
	waitFor(t, 15*time.Second, registered) // after the agent came up

	if err := consul.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if err := consul.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, registered) // after the agent restarted
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []registry.Config{
		{Name: "x", Address: "127.0.0.1", Port: 1},
		{ConsulAddr: "127.0.0.1:8500", Address: "127.0.0.1", Port: 1},
		{ConsulAddr: "127.0.0.1:8500", Name: "x", Address: "127.0.0.1"},
		{ConsulAddr: "no-port", Name: "x", Address: "127.0.0.1", Port: 1},
	} {
		if _, err := registry.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func isNotFound(err error) bool {
	var s api.StatusError
	return errors.As(err, &s) && s.Code == http.StatusNotFound
}
