package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/controlplane/catalog"
	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/reconcile"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
)

type recordingPublisher struct{ updates []*xdsresources.Set }

func (p *recordingPublisher) Update(_ context.Context, res *xdsresources.Set) (string, error) {
	p.updates = append(p.updates, res)
	return "v", nil
}

type recordingStatus struct{ statuses []reconcile.ConfigStatus }

func (s *recordingStatus) WriteStatus(_ context.Context, st reconcile.ConfigStatus) error {
	s.statuses = append(s.statuses, st)
	return nil
}

func snapshot(config catalog.ConfigDoc) catalog.Snapshot {
	return catalog.Snapshot{
		Datacenter: "dc1", TrustDomain: "td.consul",
		Services: []catalog.Service{{Name: "users", Endpoints: []catalog.Endpoint{{Address: "127.0.0.1", Port: 21000, InstanceID: "n/users-1"}}}},
		Leaf:     catalog.Leaf{CertPEM: "cert", KeyPEM: "secret-key"},
		RootsPEM: []string{"root"},
		Config:   config,
	}
}

func newReconciler(t *testing.T) (*reconcile.Reconciler, *recordingPublisher, *recordingStatus) {
	t.Helper()
	pub, status := &recordingPublisher{}, &recordingStatus{}
	r, err := reconcile.New(reconcile.Config{
		Publisher: pub, Status: status, Listener: ir.Listener{Address: "127.0.0.1", Port: 5000}, Ingress: "ingress",
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, pub, status
}

// modelJSON is the model in use, as JSON.
func modelJSON(t *testing.T, r *reconcile.Reconciler) string {
	t.Helper()
	body, _, err := r.ModelJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func TestInvalidDocumentKeepsLastGood(t *testing.T) {
	r, pub, status := newReconciler(t)
	ctx := context.Background()

	good := strings.Replace(string(edgeconfig.Default()), "timeout: 15s", "timeout: 7s", 1)
	if err := r.Apply(ctx, snapshot(catalog.ConfigDoc{Present: true, Value: []byte(good), ModifyIndex: 10})); err != nil {
		t.Fatal(err)
	}
	modelGood := modelJSON(t, r)
	if !strings.Contains(modelGood, `"timeout": 7000000000`) {
		t.Fatalf("the accepted document is not in use:\n%s", modelGood)
	}
	if err := r.Apply(ctx, snapshot(catalog.ConfigDoc{Present: true, Value: []byte("version: 2\n"), ModifyIndex: 11})); err != nil {
		t.Fatal(err)
	}
	if got := modelJSON(t, r); got != modelGood {
		t.Fatal("an invalid document changed the model")
	}
	if len(status.statuses) != 2 {
		t.Fatalf("%d statuses, want one per revision", len(status.statuses))
	}
	rejected := status.statuses[1]
	if rejected.Accepted || rejected.ModifyIndex != 11 || rejected.ServingIndex != 10 || !strings.Contains(rejected.Error, "version") {
		t.Fatalf("status %+v", rejected)
	}
	// A catalog change with the same revision reports nothing new.
	if err := r.Apply(ctx, snapshot(catalog.ConfigDoc{Present: true, Value: []byte("version: 2\n"), ModifyIndex: 11})); err != nil {
		t.Fatal(err)
	}
	if len(status.statuses) != 2 || len(pub.updates) != 3 {
		t.Fatalf("%d statuses and %d updates", len(status.statuses), len(pub.updates))
	}
	// Deleting the key goes back to the built-in default.
	if err := r.Apply(ctx, snapshot(catalog.ConfigDoc{})); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(modelJSON(t, r), `"timeout": 7000000000`) {
		t.Fatal("the default did not come back when the key was deleted")
	}
}

func TestModelRedactsKey(t *testing.T) {
	r, _, _ := newReconciler(t)
	if _, _, err := r.ModelJSON(); err == nil {
		t.Fatal("a model before the first snapshot")
	}
	if err := r.Apply(context.Background(), snapshot(catalog.ConfigDoc{})); err != nil {
		t.Fatal(err)
	}
	body, _, err := r.ModelJSON()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), "secret-key") || !strings.Contains(string(body), "[redacted]") {
		t.Fatal("the private key is shown")
	}
}
