package process_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/process"
	"github.com/portico-mesh/portico/services/platform/registry"
	"github.com/portico-mesh/portico/services/platform/web"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Consul))
}

// journal records what happened, in order.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, s)
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

func waitFor(t *testing.T, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := localenv.Poll(ctx, 20*time.Millisecond, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func open(t *testing.T, cfg process.Config) *process.Process {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	cfg.ShutdownTimeout = 5 * time.Second
	p, err := process.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// At shutdown the server finishes its in-flight request while the loops
// still run; then the loops stop and are waited for; then the release
// steps run in reverse order.
func TestShutdownOrder(t *testing.T) {
	p := open(t, process.Config{})
	var events journal
	var loopRunning atomic.Bool
	p.Go("loop", func(ctx context.Context) error {
		loopRunning.Store(true)
		<-ctx.Done()
		loopRunning.Store(false)
		events.add("loop stopped")
		return nil
	})
	p.OnClose("first", func(context.Context) error { events.add("close first"); return nil })
	p.OnClose("second", func(context.Context) error { events.add("close second"); return nil })

	entered, release := make(chan struct{}), make(chan struct{})
	srv := web.New(p.WebConfig(nil))
	srv.Mount(web.Route{Method: fiber.MethodGet, Path: "/slow", Handler: func(c *fiber.Ctx) error {
		close(entered)
		<-release
		if loopRunning.Load() {
			events.add("request finished, loop running")
		} else {
			events.add("request finished, loop stopped")
		}
		return c.SendStatus(http.StatusNoContent)
	}})
	ln := listen(t)
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, srv, ln) }()

	answered := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				err = errors.New(resp.Status)
			}
		}
		answered <- err
	}()
	<-entered
	cancel()
	// Once the listener is closed the shutdown is under way; the request
	// in flight must still finish, and before the loops stop.
	waitFor(t, "the server to stop accepting", func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return errors.New("still accepting")
		}
		return nil
	})
	close(release)
	if err := <-answered; err != nil {
		t.Errorf("the request in flight: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	want := []string{"request finished, loop running", "loop stopped", "close second", "close first"}
	if got := events.list(); !slices.Equal(got, want) {
		t.Errorf("shutdown went %q, want %q", got, want)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	if got := events.list(); len(got) != len(want) {
		t.Errorf("a second Close ran the release steps again: %q", got)
	}
}

// A loop that fails shuts the process down: Serve returns its error
// without its context ending, after every other loop stopped and every
// release step ran.
func TestFailingLoopStopsTheProcess(t *testing.T) {
	p := open(t, process.Config{})
	var events journal
	p.Go("steady", func(ctx context.Context) error { <-ctx.Done(); events.add("steady stopped"); return nil })
	p.Go("finite", func(context.Context) error { return nil }) // ending early is no failure
	broken := errors.New("lost the watch")
	p.Go("watcher", func(context.Context) error { return broken })
	p.OnClose("resource", func(context.Context) error { events.add("released"); return nil })

	done := make(chan error, 1)
	go func() { done <- p.Serve(context.Background(), web.New(p.WebConfig(nil)), listen(t)) }()
	select {
	case err := <-done:
		if !errors.Is(err, broken) || !strings.Contains(err.Error(), "watcher") {
			t.Errorf("Serve returned %v, want the watcher's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a failed loop did not stop the process")
	}
	if got, want := events.list(), []string{"steady stopped", "released"}; !slices.Equal(got, want) {
		t.Errorf("shutdown went %q, want %q", got, want)
	}
}

// Loops start with serving: a process closed before it served never ran
// them (a command's start-up writes stay put until then).
func TestLoopsStartWithServing(t *testing.T) {
	p := open(t, process.Config{})
	var ran atomic.Bool
	p.Go("loop", func(context.Context) error { ran.Store(true); return nil })
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Error("a loop ran in a process that never served")
	}
}

// Wait runs a process without a server of its own; Close refuses nothing
// and reports a release step that failed.
func TestWaitAndClose(t *testing.T) {
	p := open(t, process.Config{})
	stopped := make(chan struct{})
	p.Go("loop", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
	p.OnClose("flaky", func(context.Context) error { return errors.New("connection reset") })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "close flaky") {
		t.Errorf("Wait returned %v, want the failed release step", err)
	}
	select {
	case <-stopped:
	default:
		t.Error("the loop was not stopped before Wait returned")
	}
}

// With Consul configured the process registers once it listens, with its
// OpenAPI path and upstreams, and deregisters before it stops serving.
func TestRegistersWhileServing(t *testing.T) {
	client := localenvtest.ConsulClient(t)
	id := "process-test-" + uuid.NewString()
	p := open(t, process.Config{
		Name: "process-test", Version: "1.2.3", OpenAPIPath: "/openapi.json",
		Consul:    process.ConsulConfig{ConsulHTTPAddr: localenvtest.ConsulAddr(t), ServiceID: id, CheckInterval: time.Second, DeregisterAfter: time.Minute},
		Upstreams: []registry.Upstream{{Service: "products", LocalPort: 19002}},
	})
	ln := listen(t)
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, web.New(p.WebConfig(nil)), ln) }()

	waitFor(t, "the registration", func(context.Context) error {
		_, _, err := client.Agent().Service(id, nil)
		return err
	})
	svc, _, err := client.Agent().Service(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Service != "process-test" || svc.Port != port || svc.Meta["openapi"] != "/openapi.json" || svc.Meta["version"] != "1.2.3" {
		t.Errorf("registered %s port %d meta %v", svc.Service, svc.Port, svc.Meta)
	}
	sidecar, _, err := client.Agent().Service(id+"-sidecar-proxy", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ups := sidecar.Proxy.Upstreams; len(ups) != 1 || ups[0].DestinationName != "products" || ups[0].LocalBindPort != 19002 {
		t.Errorf("sidecar upstreams %+v", ups)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, _, err := client.Agent().Service(id, nil); err == nil {
		t.Error("still registered after Serve returned")
	}
}
