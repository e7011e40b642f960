package faults_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// consulOutage is how long Consul's agent stays down.
const consulOutage = 10 * time.Second

// Consul's agent stops for consulOutage under load and starts again.
// While it is down the ingress and the sidecars keep their configuration
// and no request fails. The stack's agent runs in -dev mode, whose state
// is in memory: its restart is a new cluster (a new CA and trust domain,
// an empty catalog and KV). The case puts back what a persistent agent
// keeps (the mesh entries and the edge configuration); the services
// register again by themselves. Until every Envoy has certificates of the
// new CA and the catalog is whole again, requests fail: that transition
// is counted and printed, not asserted; once it is over none fails.
func TestConsulAgentRestarted(t *testing.T) {
	r := newRow(t, 3, "Consul agent down 10 s, restarted (-dev: new CA)", "0 failed while down and once converged")
	consul := sys.servers.Consul
	l := startLoad(t, loadConfig{Rate: 60, WriteEvery: 10})
	waitRequests(t, l, 120)
	before := ingressConfig(t)

	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := consul.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := consul.Start(ctx); err != nil {
				t.Errorf("restart consul: %v", err)
			}
		}
	})
	down := l.snapshot().Requests
	waitRequests(t, l, down+int(consulOutage.Seconds())*60)
	whileDown := l.snapshot()
	if got := ingressConfig(t); got != before {
		t.Errorf("the ingress's configuration changed while Consul was down")
	}

	startCtx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := consul.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if err := stack.ApplyMeshEntries(startCtx, consul, sys.stack.MeshEntryOptions()...); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.servers.ConsulAPI.KV().Put(&api.KVPair{Key: stack.ConfigKey, Value: sys.goodConfig}, (&api.WriteOptions{}).WithContext(startCtx)); err != nil {
		t.Fatal(err)
	}
	for service, n := range map[string]int{"users": 1, "products": 2, "edge": 1} {
		if err := stack.WaitPassing(startCtx, sys.servers.ConsulAPI, service, n); err != nil {
			t.Fatal(err)
		}
	}
	converged := awaitNoFailures(t, l, 2*time.Minute)
	waitRequests(t, l, converged.Requests+300)
	got := l.stop()
	transition := converged.non2xx() - whileDown.non2xx()
	after := got.non2xx() - converged.non2xx()
	t.Logf("%s; while down: %d requests, %d failed; the restart's transition: %d requests, %d failed; once converged: %d requests, %d failed",
		got, whileDown.Requests-down, whileDown.non2xx(), converged.Requests-whileDown.Requests, transition, got.Requests-converged.Requests, after)
	r.Requests, r.Failures = got.Requests, got.non2xx()
	if whileDown.non2xx() > 0 || after > 0 {
		t.Errorf("%d requests failed while Consul was down, %d once converged: %s", whileDown.non2xx(), after, got)
	}
}

// awaitNoFailures waits until 120 requests in a row complete without a
// new failure, and returns the tally at that point.
func awaitNoFailures(t *testing.T, l *load, within time.Duration) tally {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		from := l.snapshot()
		for l.snapshot().Requests < from.Requests+120 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if now := l.snapshot(); now.non2xx() == from.non2xx() {
			return now
		}
	}
	t.Fatalf("requests still failing %v after the restart: %s", within, l.snapshot())
	return tally{}
}
