package ingress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/reconcile"
	"github.com/portico-mesh/portico/edge/controlplane/xdsserver"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// The control plane's KV keys (its command's defaults).
const (
	configKey = stack.ConfigKey
	statusKey = stack.ConfigStatusKey
)

// baseDocument is the default configuration without the edge service
// (this package has no edge), and with limits no test reaches by
// accident: the tests of rate limits set their own on one route.
func baseDocument() edgeconfig.Document {
	doc, err := edgeconfig.Parse(edgeconfig.Default())
	if err != nil {
		panic(err)
	}
	doc.Edge = edgeconfig.Edge{}
	generous := &edgeconfig.Limit{Requests: 1_000_000, Per: "minute"}
	doc.Defaults.RateLimit = &edgeconfig.RateLimit{
		Local:  &edgeconfig.TokenBucket{Requests: 100_000, Per: edgeconfig.Duration(time.Second), Burst: 100_000},
		Global: &edgeconfig.GlobalLimits{PerClient: generous, PerSubject: generous},
	}
	for i := range doc.Routes {
		doc.Routes[i].Cache = false
		doc.Routes[i].RateLimit = nil
	}
	return doc
}

// writeConfig stores a document in KV and returns its modify index.
func writeConfig(ctx context.Context, raw []byte) (uint64, error) {
	if _, err := env.consulAPI.KV().Put(&api.KVPair{Key: configKey, Value: raw}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return 0, err
	}
	pair, _, err := env.consulAPI.KV().Get(configKey, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("read back %s: %w", configKey, err)
	}
	if pair == nil {
		return 0, fmt.Errorf("read back %s: the key is gone", configKey)
	}
	return pair.ModifyIndex, nil
}

// configStatus waits for the status of revision index.
func configStatus(ctx context.Context, index uint64) (reconcile.ConfigStatus, error) {
	for {
		pair, _, err := env.consulAPI.KV().Get(statusKey, (&api.QueryOptions{}).WithContext(ctx))
		if err == nil && pair != nil {
			var st reconcile.ConfigStatus
			if err := json.Unmarshal(pair.Value, &st); err == nil && st.ModifyIndex == index {
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			return reconcile.ConfigStatus{}, fmt.Errorf("no status for revision %d: %w", index, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// applyDocument writes doc, requires it accepted, and waits until every
// running ingress Envoy acknowledged the resulting configuration.
func applyDocument(ctx context.Context, doc edgeconfig.Document) error {
	raw, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	index, err := writeConfig(ctx, raw)
	if err != nil {
		return err
	}
	st, err := configStatus(ctx, index)
	if err != nil {
		return err
	}
	if !st.Accepted {
		return fmt.Errorf("document rejected: %s", st.Error)
	}
	return waitIngressAcked(ctx)
}

// waitIngressAcked waits until the ingress Envoy applied the current
// snapshot (the snapshot may still be on its way: wait for it to settle).
func waitIngressAcked(ctx context.Context) error {
	for {
		version := env.cp.Server().Version(xdsserver.IngressGroup)
		waitCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := env.cp.Server().WaitAcked(waitCtx, "ingress-1", version)
		cancel()
		if err == nil && env.cp.Server().Version(xdsserver.IngressGroup) == version {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ingress did not acknowledge %s: %w", version, ctx.Err())
		}
	}
}

// useDocument applies a variant of the base document for one test and
// restores the base afterwards.
func useDocument(t *testing.T, mutate func(*edgeconfig.Document)) {
	t.Helper()
	doc := baseDocument()
	mutate(&doc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := applyDocument(ctx, doc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := applyDocument(ctx, baseDocument()); err != nil {
			t.Errorf("restore base configuration: %v", err)
		}
	})
}

// TestConfigChangeKeepsServing: KV changes apply while requests are in
// flight, and not one of them fails.
func TestConfigChangeKeepsServing(t *testing.T) {
	tok := validToken(t)
	products := startUpstream(t, "products")
	waitServing(t, tok, products)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Cleanup(func() {
		if err := applyDocument(context.Background(), baseDocument()); err != nil {
			t.Errorf("restore: %v", err)
		}
	})

	stop := make(chan struct{})
	results := make(chan [2]int, 1)
	go func() {
		var ok, failed int
		for {
			select {
			case <-stop:
				results <- [2]int{ok, failed}
				return
			default:
			}
			if r := get(t, "/api/products/products", bearer(tok)); r.Status == http.StatusOK {
				ok++
			} else {
				failed++
				t.Logf("failed during a change: %d %s", r.Status, r.Body)
			}
		}
	}()
	for i := range 5 {
		doc := baseDocument()
		timeout := edgeconfig.Duration(time.Duration(10+i) * time.Second)
		doc.Defaults.Timeout = &timeout
		if err := applyDocument(ctx, doc); err != nil {
			close(stop)
			t.Fatal(err)
		}
	}
	close(stop)
	got := <-results
	t.Logf("%d requests during 5 configuration changes", got[0]+got[1])
	if got[1] != 0 || got[0] == 0 {
		t.Fatalf("%d of %d requests failed", got[1], got[0]+got[1])
	}
}

// TestInvalidConfigRejected: an invalid document is rejected with its
// reason in the status key, and the last good configuration keeps serving.
func TestInvalidConfigRejected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Cleanup(func() {
		if err := applyDocument(context.Background(), baseDocument()); err != nil {
			t.Errorf("restore: %v", err)
		}
	})
	modelBefore := modelRoutes(t)
	for name, raw := range map[string]string{
		"not yaml":      "routes: [",
		"unknown field": "version: 1\nrouts: []\n",
		"invalid value": strings.Replace(string(edgeconfig.Default()), "attempts: 2", "attempts: 99", 1),
	} {
		index, err := writeConfig(ctx, []byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		st, err := configStatus(ctx, index)
		if err != nil {
			t.Fatal(err)
		}
		if st.Accepted || st.Error == "" || st.ServingIndex == index {
			t.Fatalf("%s: status %+v, want rejected with a reason", name, st)
		}
		t.Logf("%s: rejected: %s", name, st.Error)
	}
	if after := modelRoutes(t); after != modelBefore {
		t.Fatalf("routes changed after invalid documents:\nbefore %s\nafter  %s", modelBefore, after)
	}
	if r := get(t, "/api/users/users/1", bearer(validToken(t))); r.Status != http.StatusOK {
		t.Fatalf("ingress stopped serving: %d %s", r.Status, r.Body)
	}
}

// modelRoutes reads the routes of the model in use from the control
// plane's read-only admin endpoint.
func modelRoutes(t *testing.T) string {
	t.Helper()
	r := call(t, "http://"+env.cp.AdminAddr(), http.MethodGet, "/model", nil, "")
	if r.Status != http.StatusOK {
		t.Fatalf("/model: %d %s", r.Status, r.Body)
	}
	var model struct{ Routes json.RawMessage }
	if err := json.Unmarshal(r.Body, &model); err != nil || len(model.Routes) == 0 {
		t.Fatalf("/model: %v: %s", err, r.Body)
	}
	if strings.Contains(string(r.Body), "PRIVATE KEY") {
		t.Fatal("/model shows the private key")
	}
	return string(model.Routes)
}
