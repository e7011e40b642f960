package purge

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/services/platform/events"
)

func TestTagsFor(t *testing.T) {
	tests := []struct {
		typ, subject, data string
		want               []string
	}{
		{"product.updated", "products/42", `{}`, []string{"product:42", "products"}},
		{"product.created", "products/7", `{}`, []string{"product:7", "products"}},
		{"product.deleted", "", `{"id": 9}`, []string{"product:9", "products"}},
		{"product.deleted", "products/x", `{}`, []string{"products"}},
		// Users' reads are never cached: their events purge nothing.
		{"user.updated", "users/3", `{}`, nil},
		{"order.created", "orders/1", `{}`, nil},
	}
	for _, tc := range tests {
		got := TagsFor(events.Envelope{Type: tc.typ, Subject: tc.subject, Data: []byte(tc.data)})
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: %v, want %v", tc.typ, tc.subject, got, tc.want)
		}
	}
}

// scriptedPurger answers PurgeOnce with err, or applies each id once.
type scriptedPurger struct {
	err  error
	seen map[string]bool
}

func (p *scriptedPurger) PurgeOnce(_ context.Context, id string, _ time.Duration, tags ...string) (int, bool, error) {
	if p.err != nil {
		return 0, false, p.err
	}
	if p.seen[id] {
		return 0, false, nil
	}
	p.seen[id] = true
	return len(tags), true, nil
}

// The handler's results are counted by kind, and a failed purge is an
// error (which the consumer retries), never a silent acknowledgement.
func TestHandlerResults(t *testing.T) {
	purger := &scriptedPurger{seen: map[string]bool{}}
	reg := prometheus.NewRegistry()
	h, err := NewHandler(Config{Purger: purger, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	product := events.Envelope{ID: "e1", Type: "product.updated", Subject: "products/1", Time: time.Now()}
	for _, ev := range []events.Envelope{product, product, {ID: "e2", Type: "user.updated", Subject: "users/1"}} {
		if err := h.Handle(ctx, ev); err != nil {
			t.Fatalf("%s: %v", ev.ID, err)
		}
	}
	purger.err = errors.New("redis is down")
	if err := h.Handle(ctx, events.Envelope{ID: "e3", Type: "product.deleted", Subject: "products/2"}); err == nil {
		t.Error("a failed purge returned no error")
	}
	for result, want := range map[string]float64{"applied": 1, "duplicate": 1, "ignored": 1, "failed": 1} {
		if got := counter(t, reg, "edge_purge_events_total", result); got != want {
			t.Errorf("%s: %v, want %v", result, got, want)
		}
	}
	if got := counter(t, reg, "edge_cache_purges_total", ""); got != 2 {
		t.Errorf("purged keys %v, want 2", got)
	}
	if _, err := NewHandler(Config{}); err == nil {
		t.Error("a handler without a purger was accepted")
	}
}

// counter reads a counter from reg: the series whose only label has the
// value label, or the unlabelled one for "".
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
