// Package outbox implements the transactional outbox: events are stored in
// the same transaction as the change they describe and a relay publishes
// them afterwards, so a write never succeeds without its event nor an event
// escape for a write that rolled back, whether or not the broker is up.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/propagation"

	"github.com/portico-mesh/portico/services/platform/events"
)

// Enqueue stores ev in tx. The trace context of ctx travels with it, so the
// consumer's span joins the trace of the request that caused the event.
func Enqueue(ctx context.Context, tx pgx.Tx, propagator propagation.TextMapPropagator, ev events.Envelope) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("outbox: encode %s: %w", ev.Type, err)
	}
	carrier := propagation.MapCarrier{}
	if propagator != nil {
		propagator.Inject(ctx, carrier)
	}
	headers, err := json.Marshal(carrier)
	if err != nil {
		return fmt.Errorf("outbox: encode headers: %w", err)
	}
	_, err = tx.Exec(ctx,
		`INSERT INTO outbox (event_id, event_type, payload, headers) VALUES ($1, $2, $3, $4)`,
		ev.ID, ev.Type, payload, headers)
	if err != nil {
		return fmt.Errorf("outbox: insert %s: %w", ev.Type, err)
	}
	return nil
}
