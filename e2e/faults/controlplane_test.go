package faults_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// controlPlaneOutage is how long the control plane stays down: the
// issue's 60 s.
const controlPlaneOutage = 60 * time.Second

// The control plane stops for controlPlaneOutage under load and comes
// back: the ingress keeps serving its last configuration (Envoy keeps
// what it has when its xDS stream breaks), and no request fails; after
// the restart it is programmed again with the same configuration.
func TestControlPlaneDown(t *testing.T) {
	r := newRow(t, 3, fmt.Sprintf("control plane down %d s, restarted", int(controlPlaneOutage.Seconds())), "config kept, 0 failed")
	cp := sys.controlPlane.Process
	l := startLoad(t, loadConfig{Rate: 60, WriteEvery: 10})
	waitRequests(t, l, 120)
	before := ingressConfig(t)

	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := cp.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := cp.Start(ctx); err != nil {
				t.Errorf("restart the control plane: %v", err)
			}
		}
	})
	down := l.snapshot().Requests
	waitRequests(t, l, down+int(controlPlaneOutage.Seconds())*60)
	if got := ingressConfig(t); got != before {
		t.Errorf("the ingress's configuration changed while the control plane was down")
	}
	whileDown := l.snapshot()

	startCtx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := cp.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	// Programmed again: the ingress's xDS stream is back up.
	waitConnected(t)
	waitRequests(t, l, l.snapshot().Requests+120)
	got := l.stop()
	t.Logf("%s; %d requests while the control plane was down", got, whileDown.Requests-down)
	r.Requests, r.Failures = got.Requests, got.non2xx()
	if after := ingressConfig(t); after != before {
		t.Errorf("the ingress's configuration differs after the control plane's restart:\n%s\n%s", before, after)
	}
	if got.non2xx() > 0 {
		t.Errorf("%d requests failed: %s", got.non2xx(), got)
	}
}

// waitConnected waits until the ingress's ADS stream to the control plane
// is up.
func waitConnected(t *testing.T) {
	t.Helper()
	localenvtest.WaitUntil(t, 30*time.Second, "the ingress connected to the control plane", func() bool {
		return envoyStat(t, "control_plane.connected_state") == 1
	})
}
