package outbox_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// The trace of the request that caused an event travels with it, so the
// consumer's work joins that trace.
func TestEnqueueCarriesTraceContext(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t, migrations.Users())
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled})
	spanCtx := trace.ContextWithSpanContext(ctx, sc)

	ev, err := events.New("user.created", "portico/test", "users/1", map[string]int{"id": 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return outbox.NewWriter(telemetry.Tracing{Propagator: propagation.TraceContext{}}).Enqueue(spanCtx, tx, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		headers []byte
		payload []byte
	)
	if err := pool.QueryRow(ctx, "SELECT headers, payload FROM outbox WHERE event_id = $1", ev.ID).Scan(&headers, &payload); err != nil {
		t.Fatal(err)
	}
	var h map[string]string
	if err := json.Unmarshal(headers, &h); err != nil {
		t.Fatal(err)
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; h["traceparent"] != want {
		t.Fatalf("traceparent = %q, want %q", h["traceparent"], want)
	}
	var stored events.Envelope
	if err := json.Unmarshal(payload, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.ID != ev.ID || stored.Type != ev.Type || stored.Subject != ev.Subject || stored.SpecVersion != events.SpecVersion {
		t.Fatalf("stored envelope %+v differs from %+v", stored, ev)
	}
}
