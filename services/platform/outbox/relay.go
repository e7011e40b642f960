package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/services/platform/backoff"
	"github.com/portico-mesh/portico/services/platform/events"
)

// Publisher delivers messages to the broker in order and reports how many,
// from the first, the broker confirmed; err is nil only if all were.
type Publisher interface {
	Publish(ctx context.Context, msgs []events.Message) (confirmed int, err error)
}

// RelayConfig configures a Relay.
type RelayConfig struct {
	Pool      *pgxpool.Pool
	Publisher Publisher
	Log       *slog.Logger
	// Registerer receives the outbox metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// BatchSize bounds how many events one publish carries (default 100).
	BatchSize int
	// PollInterval is how often the relay looks for events when no
	// notification arrives (default 1s); notifications make it immediate.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed publish or
	// a lost listener connection (defaults 100ms and 15s).
	MinBackoff, MaxBackoff time.Duration
	// BatchTimeout bounds one batch: publish, confirms and delete
	// (default 10s).
	BatchTimeout time.Duration
}

// Relay publishes stored events in commit order. Instances of a service
// share the table; an advisory lock lets one publish at a time, which keeps
// the order and avoids double sends.
type Relay struct {
	cfg     RelayConfig
	metrics relayMetrics
}

type relayMetrics struct {
	backlog   prometheus.Gauge
	oldest    prometheus.Gauge
	published prometheus.Counter
	failures  prometheus.Counter
}

// relayLockID is the transaction-level advisory lock key of the relay.
const relayLockID int64 = 0x6f7574626f78 // "outbox"

// NewRelay returns a relay; call Run to start it.
func NewRelay(cfg RelayConfig) *Relay {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 15 * time.Second
	}
	cfg.MinBackoff = min(cfg.MinBackoff, cfg.MaxBackoff)
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := relayMetrics{
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_backlog", Help: "Events stored in the outbox and not yet published.",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_oldest_event_age_seconds", Help: "Age of the oldest unpublished event, 0 when the outbox is empty.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_published_total", Help: "Events published to the broker and confirmed.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_publish_failures_total", Help: "Publish attempts that failed and will be retried.",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(m.backlog, m.oldest, m.published, m.failures)
	}
	return &Relay{cfg: cfg, metrics: m}
}

// Run publishes events until ctx ends. It wakes on the outbox's
// notifications, polls as a fallback, and backs off with jitter while the
// broker or database is failing.
func (r *Relay) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		r.listen(ctx, wake)
	}()
	defer func() { <-listenDone }()

	failures := 0
	for {
		_, err := r.Drain(ctx)
		r.updateBacklog(ctx)
		wait := r.cfg.PollInterval
		if err != nil && ctx.Err() == nil {
			failures++
			r.metrics.failures.Inc()
			wait = r.backoff().Delay(failures)
			r.cfg.Log.WarnContext(ctx, "outbox publish failed; will retry", "error", err.Error(), "retry_in", wait.String())
		} else {
			failures = 0
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-wake:
			timer.Stop()
			if failures > 0 {
				// A notification doesn't mean the broker is back: keep the backoff.
				if !backoff.Wait(ctx, wait) {
					return nil
				}
			}
		case <-timer.C:
		}
	}
}

// Drain publishes everything pending now and returns how many events it
// published. Shutdown calls it to flush before the process exits.
//
// ctx ending stops Drain between batches, never inside one: a batch whose
// confirms were abandoned half-way would be published again later.
func (r *Relay) Drain(ctx context.Context) (int, error) {
	total := 0
	for ctx.Err() == nil {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.BatchTimeout)
		n, err := r.publishBatch(bctx)
		cancel()
		total += n
		if err != nil {
			return total, err
		}
		if n < r.cfg.BatchSize {
			return total, nil
		}
	}
	return total, nil
}

func (r *Relay) publishBatch(ctx context.Context) (int, error) {
	tx, err := r.cfg.Pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("outbox: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var locked bool
	if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", relayLockID).Scan(&locked); err != nil {
		return 0, fmt.Errorf("outbox: lock: %w", err)
	}
	if !locked {
		return 0, nil // another instance is relaying
	}
	rows, err := tx.Query(ctx,
		`SELECT id, event_id::text, event_type, payload, headers, created_at
		   FROM outbox ORDER BY id LIMIT $1`, r.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("outbox: read: %w", err)
	}
	var ids []int64
	var msgs []events.Message
	for rows.Next() {
		var (
			id      int64
			msg     events.Message
			headers []byte
		)
		if err := rows.Scan(&id, &msg.ID, &msg.Type, &msg.Body, &headers, &msg.Time); err != nil {
			rows.Close()
			return 0, fmt.Errorf("outbox: scan: %w", err)
		}
		if err := json.Unmarshal(headers, &msg.Headers); err != nil {
			rows.Close()
			return 0, fmt.Errorf("outbox: headers of %s: %w", msg.ID, err)
		}
		ids = append(ids, id)
		msgs = append(msgs, msg)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("outbox: read: %w", err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	confirmed, pubErr := r.cfg.Publisher.Publish(ctx, msgs)
	if confirmed > 0 {
		// Forget what the broker confirmed even when the rest failed, so a
		// retry resends only messages whose fate is unknown. Should this
		// delete or commit fail, they are sent again: consumers deduplicate
		// on the event id.
		if _, err := tx.Exec(ctx, "DELETE FROM outbox WHERE id = ANY($1)", ids[:confirmed]); err != nil {
			return 0, errors.Join(pubErr, fmt.Errorf("outbox: delete published: %w", err))
		}
		if err := tx.Commit(ctx); err != nil {
			return 0, errors.Join(pubErr, fmt.Errorf("outbox: commit: %w", err))
		}
		r.metrics.published.Add(float64(confirmed))
	}
	return confirmed, pubErr
}

func (r *Relay) updateBacklog(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var (
		n   int64
		age float64
	)
	err := r.cfg.Pool.QueryRow(ctx,
		`SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM outbox`).Scan(&n, &age)
	if err != nil {
		return
	}
	r.metrics.backlog.Set(float64(n))
	r.metrics.oldest.Set(age)
}

// listen holds a dedicated connection on LISTEN outbox and signals wake on
// every notification. It reconnects with backoff; the relay's poll covers
// whatever is missed meanwhile.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	failures := 0
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		failures++
		delay := r.backoff().Delay(failures)
		r.cfg.Log.DebugContext(ctx, "outbox listener reconnecting", "error", fmt.Sprint(err), "retry_in", delay.String())
		if !backoff.Wait(ctx, delay) {
			return
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(cctx, r.cfg.Pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "LISTEN outbox"); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		select {
		case wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// backoff spaces out retries with the platform's policy: exponential,
// capped, jittered so that instances don't retry in step.
func (r *Relay) backoff() backoff.Policy {
	return backoff.Policy{Min: r.cfg.MinBackoff, Max: r.cfg.MaxBackoff}
}
