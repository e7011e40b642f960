package faults_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// One of the two products instances dies with SIGKILL (its sidecar stays)
// under load: no request fails, the ingress stops sending to it (outlier
// ejection or the catalog), and once restarted it serves again. Every
// write carries an Idempotency-Key, so the ingress retries the writes the
// dead instance failed on the other one, and none is written twice.
func TestProductsInstanceKilled(t *testing.T) {
	r := newRow(t, 1, "products instance SIGKILL", "0 failed (issue: ≤ 0.1%), 0 written twice, ejected, rejoins")
	victim := sys.products[0]
	// Replayed writes: a retry whose first attempt had committed.
	var replayed atomic.Int32
	l := startLoad(t, loadConfig{Rate: 60, WriteEvery: 4, Observe: func(_ request, rep reply, _ time.Time) {
		if rep.header.Get("Idempotent-Replayed") == "true" {
			replayed.Add(1)
		}
	}})
	waitRequests(t, l, 120)

	ejectionsBefore := envoyStat(t, "cluster.products.outlier_detection.ejections_enforced_total")
	retriesBefore := envoyStat(t, "cluster.products.upstream_rq_retry")
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
	// Reads are retried on a gateway error; so are the writes, as each
	// carries an Idempotency-Key: a write that reached the dead instance
	// (or its sidecar, whose 503 says nothing of whether the service took
	// it) is sent again to the other one, which creates the product or,
	// if the first attempt committed, answers its stored 201. So none
	// may fail.
	if reads := got.non2xx() - got.FailedWrites; reads > 0 {
		t.Errorf("%d reads failed: %s", reads, got)
	}
	if got.FailedWrites > 0 {
		t.Errorf("%d writes failed: %s", got.FailedWrites, got)
	}
	// Each key is at most one product, exactly one when it was answered.
	counts, kept := keyCounts(t, got.Keys)
	stored := 0
	for _, key := range got.Keys {
		stored += counts[key]
		if counts[key] > 1 {
			r.Duplicates += counts[key] - 1
			t.Errorf("Idempotency-Key %s: %d products", key, counts[key])
		}
	}
	if created := len(got.Created); stored-r.Duplicates != created || kept != created {
		t.Errorf("%d keys have a product and %d a kept response; %d writes were answered 201", stored-r.Duplicates, kept, created)
	}
	t.Logf("%d writes, %d products stored by their keys, %d written twice; the ingress retried %d requests to products, %d writes answered from a stored response",
		got.Writes, stored, r.Duplicates, envoyStat(t, "cluster.products.upstream_rq_retry")-retriesBefore, replayed.Load())
	t.Logf("failed share %.2f%% of %d requests", 100*float64(got.non2xx())/float64(got.Requests), got.Requests)
}
