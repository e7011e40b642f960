package faults_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// One of the two products instances dies with SIGKILL (its sidecar stays)
// under load: at most 0.1% of the requests fail, the ingress stops
// sending to it (outlier ejection or the catalog), and once restarted it
// serves again.
func TestProductsInstanceKilled(t *testing.T) {
	r := newRow(t, 1, "products instance SIGKILL", "reads 0 failed, writes ≤ 3 failed (issue: ≤ 0.1%), ejected, rejoins")
	victim := sys.products[0]
	l := startLoad(t, loadConfig{Rate: 60, WriteEvery: 4})
	waitRequests(t, l, 120)

	ejectionsBefore := envoyStat(t, "cluster.products.outlier_detection.ejections_enforced_total")
	if err := victim.Process().Kill(); err != nil {
		t.Fatal(err)
	}
	// Ejected: the ingress's outlier detection ejects it, or Consul's
	// check takes it out of the endpoints, whichever comes first.
	var how string
	localenvtest.Eventually(t, 30*time.Second, 100*time.Millisecond, "the killed instance ejected", func(ctx context.Context) error {
		if n := envoyStat(t, "cluster.products.outlier_detection.ejections_enforced_total"); n > ejectionsBefore {
			how = fmt.Sprintf("outlier ejection (%d)", n-ejectionsBefore)
			return nil
		}
		if endpoints := envoyStat(t, "cluster.products.membership_healthy"); endpoints == 1 {
			how = "removed from the endpoints"
			return nil
		}
		return fmt.Errorf("not ejected")
	})
	waitRequests(t, l, l.snapshot().Requests+300)

	startCtx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := victim.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	if err := stack.WaitPassing(startCtx, sys.servers.ConsulAPI, "products", 2); err != nil {
		t.Fatal(err)
	}
	localenvtest.Eventually(t, 30*time.Second, 200*time.Millisecond, "the restarted instance gets traffic", func(context.Context) error {
		n, err := served(t, victim.URL())
		if err != nil {
			return err
		}
		if n < 10 {
			return fmt.Errorf("it served %v requests", n)
		}
		return nil
	})
	got := l.stop()
	t.Logf("%s; ejected by %s; rejoined", got, how)
	r.Requests, r.Failures = got.Requests, got.non2xx()
	// Reads are retried on a gateway error, so none may fail. A write
	// is not (the ingress cannot tell a sidecar's 503 for a refused
	// local connection from one after the service took the request), so
	// the writes routed to the dead instance before its ejection fail:
	// at most consecutiveGatewayErrors (3 in the default document), each
	// a 503, never a 500 or a hang.
	const ejectionThreshold = 3
	if reads := got.non2xx() - got.FailedWrites; reads > 0 {
		t.Errorf("%d reads failed: %s", reads, got)
	}
	if got.FailedWrites > ejectionThreshold || got.Transport > 0 || got.Status[http.StatusInternalServerError] > 0 {
		t.Errorf("%d writes failed (at most %d, as 503s): %s", got.FailedWrites, ejectionThreshold, got)
	}
	t.Logf("failed share %.2f%% of %d requests", 100*float64(got.non2xx())/float64(got.Requests), got.Requests)
}
