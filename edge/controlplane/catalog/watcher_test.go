package catalog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/mesh/localenv"
)

func TestNewNeedsAClient(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a client succeeded")
	}
}

func TestNewRegistersMetricsOnce(t *testing.T) {
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Client: client, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Client: client, Registerer: reg}); err == nil {
		t.Error("a second watcher registered the same metrics on one registry")
	}
}

func TestConfigDefaults(t *testing.T) {
	got := Config{MinBackoff: time.Minute, MaxBackoff: time.Second, WaitTime: time.Hour}.withDefaults()
	if got.IngressService != "ingress" || got.ConfigKey != "portico/edge/config" || got.Coalesce != DefaultCoalesce || got.Log == nil {
		t.Errorf("defaults = %+v", got)
	}
	if got.MaxBackoff != time.Minute {
		t.Errorf("MaxBackoff = %v, want raised to MinBackoff", got.MaxBackoff)
	}
	if got.WaitTime != 10*time.Minute {
		t.Errorf("WaitTime = %v, want capped at Consul's 10m", got.WaitTime)
	}
}

func TestRunRefusesBadUse(t *testing.T) {
	// An address nothing listens on: the watches only fail and retry.
	client, err := api.NewClient(&api.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(t.Context(), nil); err == nil {
		t.Error("Run with a nil publish succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(Snapshot) { t.Error("published without Consul") }) }()
	// A counted failure shows that the first Run is running (and that
	// failing queries are counted), so a second one must be refused.
	counted, stopPolling := context.WithTimeout(ctx, 10*time.Second)
	defer stopPolling()
	if err := localenv.Poll(counted, 10*time.Millisecond, func(context.Context) error {
		if metricValue(t, w.metrics.queryErrors.WithLabelValues(kindRoots)) == 0 {
			return errors.New("no failed roots query counted")
		}
		return nil
	}); err != nil {
		t.Fatalf("failing queries are not counted: %v", err)
	}
	if err := w.Run(ctx, func(Snapshot) {}); err == nil {
		t.Error("a second concurrent Run succeeded")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after its context ended", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return while its queries were failing and backing off")
	}
	if leaked := watcherGoroutines(); leaked != "" {
		t.Errorf("goroutines outlived Run:\n%s", leaked)
	}
}
