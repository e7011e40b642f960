package system_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/reconcile"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// defaultDocument is the built-in edge configuration the system runs.
func defaultDocument(tb testing.TB) edgeconfig.Document {
	tb.Helper()
	doc, err := edgeconfig.Parse(edgeconfig.Default())
	if err != nil {
		tb.Fatal(err)
	}
	return doc
}

// useEdgeConfig writes doc to Consul KV as an operator would, requires
// the control plane to accept it, and restores the built-in default when
// the test ends. Callers wait for the behaviour they need: acceptance
// precedes the ingress's acknowledgement by a few milliseconds.
func useEdgeConfig(tb testing.TB, doc edgeconfig.Document) {
	tb.Helper()
	raw, err := yaml.Marshal(doc)
	if err != nil {
		tb.Fatal(err)
	}
	kv := sys.consulAPI.KV()
	if _, err := kv.Put(&api.KVPair{Key: stack.ConfigKey, Value: raw}, (&api.WriteOptions{}).WithContext(tb.Context())); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if _, err := kv.Delete(stack.ConfigKey, nil); err != nil {
			tb.Errorf("restore the default edge configuration: %v", err)
		}
	})
	pair, _, err := kv.Get(stack.ConfigKey, (&api.QueryOptions{}).WithContext(tb.Context()))
	if err != nil || pair == nil {
		tb.Fatalf("read back %s: %v", stack.ConfigKey, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _, err := kv.Get(stack.ConfigStatusKey, (&api.QueryOptions{}).WithContext(tb.Context()))
		if err == nil && status != nil {
			var st reconcile.ConfigStatus
			if err := json.Unmarshal(status.Value, &st); err == nil && st.ModifyIndex == pair.ModifyIndex {
				if !st.Accepted {
					tb.Fatalf("edge configuration rejected: %s", st.Error)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatal(fmt.Errorf("no status for edge configuration revision %d within 20 s", pair.ModifyIndex))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
