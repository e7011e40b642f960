package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/reconcile"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// An invalid edge configuration written to KV under load is rejected:
// the status key says so and names the revision still serving, the
// ingress keeps every resource version it had, and no request fails.
func TestInvalidEdgeConfigRejected(t *testing.T) {
	r := newRow(t, 2, "invalid edge configuration in KV", "rejected, config kept, 0 failed")
	kv := sys.servers.ConsulAPI.KV()
	good, _, err := kv.Get(stack.ConfigKey, (&api.QueryOptions{}).WithContext(t.Context()))
	if err != nil || good == nil {
		t.Fatalf("the edge configuration in KV: %v", err)
	}
	waitStatus(t, good.ModifyIndex)
	invalid := invalidEdgeConfig(t)

	l := startLoad(t, loadConfig{Rate: 60, WriteEvery: 10})
	waitRequests(t, l, 120)
	before := ingressConfig(t)
	if _, err := kv.Put(&api.KVPair{Key: stack.ConfigKey, Value: invalid}, (&api.WriteOptions{}).WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	bad, _, err := kv.Get(stack.ConfigKey, (&api.QueryOptions{}).WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	// Whatever happens below, later cases need the good document back.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := kv.Put(&api.KVPair{Key: stack.ConfigKey, Value: good.Value}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			t.Errorf("restore the edge configuration: %v", err)
		}
	})
	st := waitStatus(t, bad.ModifyIndex)
	if st.Accepted || st.Error == "" || st.ServingIndex != good.ModifyIndex {
		t.Errorf("status of the invalid revision %d: %+v, want rejected with the error and revision %d serving", bad.ModifyIndex, st, good.ModifyIndex)
	}
	// Load on, under the rejected revision.
	waitRequests(t, l, l.snapshot().Requests+300)
	after := ingressConfig(t)
	got := l.stop()
	t.Logf("%s; status %+v", got, st)
	r.Requests, r.Failures = got.Requests, got.non2xx()
	if before != after {
		t.Errorf("the ingress's configuration changed under the rejected revision:\n%s\n%s", before, after)
	}
	if got.non2xx() > 0 {
		t.Errorf("%d requests failed: %s", got.non2xx(), got)
	}
}

// invalidEdgeConfig is the suite's document with one value out of range,
// which the control plane's validation refuses.
func invalidEdgeConfig(t *testing.T) []byte {
	t.Helper()
	doc, err := edgeconfig.Parse(sys.goodConfig)
	if err != nil {
		t.Fatal(err)
	}
	doc.Defaults.OutlierDetection.MaxEjectionPercent = 500
	if err := doc.Validate(); err == nil {
		t.Fatal("the invalid document passes validation")
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitStatus waits until the status key speaks of revision index.
func waitStatus(t *testing.T, index uint64) reconcile.ConfigStatus {
	t.Helper()
	var st reconcile.ConfigStatus
	localenvtest.Eventually(t, 20*time.Second, 100*time.Millisecond, fmt.Sprintf("status of revision %d", index), func(ctx context.Context) error {
		pair, _, err := sys.servers.ConsulAPI.KV().Get(stack.ConfigStatusKey, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		if pair == nil {
			return fmt.Errorf("no status")
		}
		if err := json.Unmarshal(pair.Value, &st); err != nil {
			return err
		}
		if st.ModifyIndex != index {
			return fmt.Errorf("status is of revision %d", st.ModifyIndex)
		}
		return nil
	})
	return st
}

// ingressConfig is the ingress's dynamic configuration (listeners,
// routes, clusters, secrets) as its admin dumps it, in a canonical form:
// versions and update times left out, lists sorted. Two equal values are
// the same configuration.
func ingressConfig(t *testing.T) string {
	t.Helper()
	var dump struct {
		Configs []map[string]any `json:"configs"`
	}
	if err := json.Unmarshal(getBody(t, sys.ingress.AdminURL()+"/config_dump"), &dump); err != nil {
		t.Fatal(err)
	}
	var kept []any
	for _, c := range dump.Configs {
		if typ, _ := c["@type"].(string); !strings.HasSuffix(typ, "BootstrapConfigDump") {
			kept = append(kept, canonical(c))
		}
	}
	b, err := json.Marshal(kept)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func canonical(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			if k != "version_info" && k != "last_updated" {
				out[k] = canonical(x)
			}
		}
		return out
	case []any:
		type item struct {
			key string
			v   any
		}
		items := make([]item, len(v))
		for i, x := range v {
			c := canonical(x)
			b, _ := json.Marshal(c)
			items[i] = item{string(b), c}
		}
		sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
		out := make([]any, len(items))
		for i, it := range items {
			out[i] = it.v
		}
		return out
	default:
		return v
	}
}
