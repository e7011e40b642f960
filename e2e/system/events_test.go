package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
)

// eventsExchange is where the services publish their events and the edge
// binds its purge queue (the AMQP_EXCHANGE default of both).
const eventsExchange = "portico.events"

// An event delivered twice, as at-least-once delivery may, purges once:
// the copy is counted as a duplicate and the entry cached after the first
// delivery stays.
func TestDuplicateEventPurgesOnce(t *testing.T) {
	before := appliedPurges(t)
	p, _ := createProduct(t, sys.alice, "Duplicate "+randomHex(4))
	waitPurgesAfter(t, before, "the creation event to be consumed")
	item := request{method: http.MethodGet, path: productPath(p.ID), token: sys.alice.Token}
	expect(t, http.StatusOK, item)
	if r := expect(t, http.StatusOK, item); r.xcache() != "HIT" {
		t.Fatalf("before the event: X-Cache %q, want HIT", r.xcache())
	}

	ev, err := events.New("product.updated", "portico/products", fmt.Sprintf("products/%d", p.ID), map[string]any{"id": p.ID}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	publish := func() {
		t.Helper()
		conn, err := amqp.Dial(sys.amqpURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := broker.DeclareExchange(ch, eventsExchange); err != nil {
			t.Fatal(err)
		}
		if err := ch.PublishWithContext(t.Context(), eventsExchange, ev.Type, false, false, amqp.Publishing{
			ContentType: "application/cloudevents+json", MessageId: ev.ID, Body: body,
		}); err != nil {
			t.Fatal(err)
		}
	}

	applied := appliedPurges(t)
	publish()
	waitPurgesAfter(t, applied, "the event to be applied")
	if r := expect(t, http.StatusOK, item); r.xcache() != "MISS" {
		t.Errorf("after the event: X-Cache %q, want MISS", r.xcache())
	}
	if r := expect(t, http.StatusOK, item); r.xcache() != "HIT" {
		t.Errorf("cached again: X-Cache %q, want HIT", r.xcache())
	}

	duplicates := edgeMetric(t, "edge_purge_events_total", `result="duplicate"`)
	publish() // the same event id again
	waitMetricAbove(t, "edge_purge_events_total", `result="duplicate"`, duplicates, "the copy to be counted as a duplicate")
	if r := expect(t, http.StatusOK, item); r.xcache() != "HIT" {
		t.Errorf("after the duplicate: X-Cache %q, want HIT (nothing purged)", r.xcache())
	}
	if got := appliedPurges(t); got != applied+1 {
		t.Errorf("applied events went from %v to %v, want one more (the first delivery only)", applied, got)
	}
}

// waitMetricAbove waits until the edge's series name{label} exceeds
// before.
func waitMetricAbove(t *testing.T, name, label string, before float64, what string) {
	t.Helper()
	localenvtest.Eventually(t, 20*time.Second, 20*time.Millisecond, what, func(context.Context) error {
		if v := edgeMetric(t, name, label); v <= before {
			return fmt.Errorf("%s{%s} is %v", name, label, v)
		}
		return nil
	})
}
