package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// running is a Watcher running for a test, its publishes on snapshots.
type running struct {
	w         *Watcher
	snapshots chan Snapshot
	reg       *prometheus.Registry
	stop      func()
}

// startWatcher runs a Watcher with a leaf and a KV key unique to the test,
// and stops it at cleanup, failing the test if Run does not return
// promptly: its blocking queries wait minutes, so this shows that shutdown
// interrupts them.
func startWatcher(t *testing.T, client *api.Client, tune func(*Config)) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Client:         client,
		IngressService: uniqueName("ingress"),
		ConfigKey:      "portico-test/" + uniqueName("edge") + "/config",
		Log:            slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:     reg,
		MinBackoff:     50 * time.Millisecond,
		MaxBackoff:     500 * time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{w: w, snapshots: make(chan Snapshot, 100), reg: reg}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(s Snapshot) { r.snapshots <- s }) }()
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after its context ended, want nil", err)
			}
			if leaked := watcherGoroutines(); leaked != "" {
				t.Errorf("goroutines of the watcher outlived Run:\n%s", leaked)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of its context ending")
		}
	}
	t.Cleanup(r.stop)
	return r
}

// next waits for the next publish.
func (r *running) next(t *testing.T, within time.Duration) Snapshot {
	t.Helper()
	select {
	case s := <-r.snapshots:
		return s
	case <-time.After(within):
		t.Fatalf("no snapshot published within %v", within)
		return Snapshot{}
	}
}

// until waits for a publish that satisfies ok and returns it with the time
// it arrived.
func (r *running) until(t *testing.T, within time.Duration, what string, ok func(Snapshot) bool) (Snapshot, time.Time) {
	t.Helper()
	deadline := time.After(within)
	last := "none"
	for {
		select {
		case s := <-r.snapshots:
			if ok(s) {
				return s, time.Now()
			}
			last = describe(s)
		case <-deadline:
			t.Fatalf("no snapshot where %s within %v; the last one published: %s", what, within, last)
			return Snapshot{}, time.Time{}
		}
	}
}

// quiet fails the test if anything is published within d.
func (r *running) quiet(t *testing.T, d time.Duration, after string) {
	t.Helper()
	select {
	case s := <-r.snapshots:
		t.Fatalf("a snapshot was published after %s, which changes nothing: %s", after, describe(s))
	case <-time.After(d):
	}
}

// metric reads one of the watcher's counters or gauges.
func (r *running) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func service(s Snapshot, name string) (Service, bool) {
	for _, svc := range s.Services {
		if svc.Name == name {
			return svc, true
		}
	}
	return Service{}, false
}

func describe(s Snapshot) string {
	out := fmt.Sprintf("dc=%s td=%s config=%v/%d leaf=%s services:", s.Datacenter, s.TrustDomain, s.Config.Present, s.Config.ModifyIndex, s.Leaf.SpiffeID)
	for _, svc := range s.Services {
		out += fmt.Sprintf(" %s%v", svc.Name, svc.Endpoints)
	}
	return out
}

func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%08x", prefix, rand.Uint32())
}

// testWriter sends the watcher's logs to the test log, shown with -v or on
// failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// instance is a service instance registered for a test, with a sidecar.
type instance struct {
	id string
	// sidecarCheckID is the sidecar's TTL check: failing it takes the
	// sidecar's endpoint out.
	sidecarCheckID string
	sidecarPort    int
}

// registerConnect registers an instance of name with a sidecar proxy, both
// passing, and deregisters them at cleanup.
func registerConnect(t *testing.T, client *api.Client, name, id string, meta map[string]string) instance {
	t.Helper()
	if err := client.Agent().ServiceRegister(connectRegistration(name, id, meta, nil)); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	t.Cleanup(func() { deregister(t, client, id) })
	sidecar, _, err := client.Agent().Service(id+"-sidecar-proxy", nil)
	if err != nil {
		t.Fatalf("read the sidecar of %s: %v", id, err)
	}
	return instance{id: id, sidecarCheckID: sidecarCheckID(id), sidecarPort: sidecar.Port}
}

// connectRegistration is an instance with a sidecar that inherits its meta
// and tags. The sidecar has a TTL check, registered passing, instead of
// Consul's default checks: no proxy listens for the TCP one, and the alias
// one starts critical and takes the agent up to seconds to settle, which
// the tests would measure instead of the watcher.
func connectRegistration(name, id string, meta map[string]string, tags []string) *api.AgentServiceRegistration {
	return &api.AgentServiceRegistration{
		ID:   id,
		Name: name,
		Port: 9000,
		Tags: tags,
		Meta: meta,
		Check: &api.AgentServiceCheck{
			CheckID: "ttl-" + id,
			TTL:     "10m",
			Status:  api.HealthPassing,
		},
		Connect: &api.AgentServiceConnect{
			SidecarService: &api.AgentServiceRegistration{
				Checks: api.AgentServiceChecks{{CheckID: sidecarCheckID(id), TTL: "10m", Status: api.HealthPassing}},
			},
		},
	}
}

func sidecarCheckID(id string) string { return "ttl-" + id + "-sidecar" }

// registerPlain registers an instance without Connect, deregistered at
// cleanup.
func registerPlain(t *testing.T, client *api.Client, name, id string) {
	t.Helper()
	err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: name, Port: 9100,
		Check: &api.AgentServiceCheck{CheckID: "ttl-" + id, TTL: "10m", Status: api.HealthPassing},
	})
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	t.Cleanup(func() { deregister(t, client, id) })
}

// deregister removes an instance (and its sidecar); removing one that is
// gone already is fine.
func deregister(t *testing.T, client *api.Client, id string) {
	t.Helper()
	err := client.Agent().ServiceDeregister(id)
	var status api.StatusError
	if errors.As(err, &status) && status.Code == http.StatusNotFound {
		return
	}
	if err != nil {
		t.Errorf("deregister %s: %v", id, err)
	}
}

func setTTL(t *testing.T, client *api.Client, checkID, output, status string) {
	t.Helper()
	if err := client.Agent().UpdateTTL(checkID, output, status); err != nil {
		t.Fatalf("update check %s: %v", checkID, err)
	}
}

// watcherGoroutines returns the stacks of goroutines running the package's
// watcher code (watches, the publisher), of any Watcher. Tests run one at a
// time, so after Run returned there must be none.
func watcherGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, frame := range []string{"consulwatch.(*Watch[", "catalog.(*Watcher).", "catalog.(*state)."} {
			if strings.Contains(g, frame) {
				leaked = append(leaked, g)
				break
			}
		}
	}
	return strings.Join(leaked, "\n\n")
}

// metricValue reads a counter or gauge. (client_golang's testutil would do,
// but brings a module the project does not otherwise need.)
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither a counter nor a gauge", m.Desc())
	return 0
}
