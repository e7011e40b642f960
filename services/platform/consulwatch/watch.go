// Package consulwatch is the one Consul blocking-query loop of Portico.
// A Watch repeats one query for as long as its context lives and hands
// every answer that is news to its Deliver function; every process that
// follows Consul (the control plane's catalog, the edge's API
// documentation) runs its queries as Watches.
//
// The discipline, after consul-template's watch/view.go:
//
//   - wait on the last answer's index; an unchanged index is a timeout,
//     not news;
//   - an index that goes backwards or is 0 resets the wait to 0, with a
//     pause (ResetPause), so a broken index cannot make a busy loop;
//   - answers that come back faster than MinInterval are spaced out, with
//     jitter, so a churning catalog cannot spin the loop either;
//   - a failed query is retried with the platform's backoff, reset by a
//     success, and the next query starts from index 0: the agent may come
//     back with lower indexes (a restarted dev agent, a restored cluster);
//   - every query carries the Run context and a deadline, so shutdown and
//     a silently dead connection both interrupt it.
package consulwatch

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/services/platform/backoff"
)

// Fetch runs one Consul query with the given options. The options carry
// the blocking index, the wait time and the context that interrupts the
// query; a Fetch must pass them on (most Consul API calls take them as
// they are).
type Fetch[T any] func(q *api.QueryOptions) (T, *api.QueryMeta, error)

// Hooks let the owner of a Watch count what happens (Prometheus counters,
// tests). Each may be nil. They run on the watch's goroutine.
type Hooks struct {
	// Failed is called for every failed query.
	Failed func()
	// Delivered is called for every answer handed to Deliver.
	Delivered func()
	// Reset is called when the index went backwards or was 0.
	Reset func()
}

// Watch is one blocking query repeated. Fetch and Deliver are required;
// zero values of the others take the defaults below.
type Watch[T any] struct {
	// Name labels the watch's logs ("services", "health", ...).
	Name  string
	Fetch Fetch[T]
	// Deliver receives each answer whose index moved (and the first one,
	// and the one after a reset). It runs on the watch's goroutine, so a
	// slow Deliver delays the next query; it must not block for long.
	Deliver func(T)
	// Log receives failures and recoveries. Default: discarded.
	Log *slog.Logger
	// WaitTime is how long one query waits for a change before Consul
	// answers anyway. Default 5m, Consul's; at most 10m, Consul's limit.
	WaitTime time.Duration
	// Backoff spaces out retries of a failing query. Default 250ms to 30s.
	Backoff backoff.Policy
	// ResetPause is the wait after an index reset: a query on index 0
	// does not block. Default Backoff.Min.
	ResetPause time.Duration
	// MinInterval is the least time between the starts of two queries;
	// 0 means none. consul-template keeps 100ms.
	MinInterval time.Duration
	Hooks       Hooks
}

// Defaults of Watch.
const (
	DefaultWaitTime   = 5 * time.Minute
	MaxWaitTime       = 10 * time.Minute
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// queryDeadlineSlack is how long after the longest possible wait a blocking
// query is abandoned.
const queryDeadlineSlack = 30 * time.Second

// errNoQueryMeta would be a client bug; without an index the query cannot
// block, so it is treated as a failed query.
var errNoQueryMeta = errors.New("consul answered without query metadata")

func (w *Watch[T]) withDefaults() Watch[T] {
	c := *w
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.WaitTime <= 0 {
		c.WaitTime = DefaultWaitTime
	}
	c.WaitTime = min(c.WaitTime, MaxWaitTime)
	if c.Backoff.Min <= 0 {
		c.Backoff.Min = DefaultMinBackoff
	}
	if c.Backoff.Max <= 0 {
		c.Backoff.Max = DefaultMaxBackoff
	}
	c.Backoff.Max = max(c.Backoff.Max, c.Backoff.Min)
	if c.ResetPause <= 0 {
		c.ResetPause = c.Backoff.Min
	}
	return c
}

// Run queries until ctx ends and then returns nil. Failures are retried,
// never returned: it fails only at once, when Fetch or Deliver is nil.
func (w *Watch[T]) Run(ctx context.Context) error {
	if w.Fetch == nil || w.Deliver == nil {
		return errors.New("consulwatch: Watch.Fetch and Watch.Deliver are required")
	}
	c := w.withDefaults()
	var (
		index     uint64
		delivered bool
		failures  int
	)
	for ctx.Err() == nil {
		started := time.Now()
		value, meta, err := c.query(ctx, index)
		if err == nil && meta == nil {
			err = errNoQueryMeta
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // shutting down: the interrupted query is no failure
			}
			failures++
			call(c.Hooks.Failed)
			// The next query starts from index 0 and so answers at once.
			// The agent that failed may come back as another one whose
			// indexes are lower than ours: waiting on our index there
			// would block for the whole WaitTime on stale data. One
			// non-blocking query per recovery is the price.
			index = 0
			delay := c.Backoff.Delay(failures)
			c.Log.Warn("consul query failed", "watch", c.Name, "failures", failures, "retry_in", delay, "err", err)
			if !backoff.Wait(ctx, delay) {
				return nil
			}
			continue
		}
		if failures > 0 {
			c.Log.Info("consul query recovered", "watch", c.Name, "after_failures", failures)
			failures = 0
		}

		s := nextIndex(index, meta.LastIndex, delivered)
		index = s.waitIndex
		if s.deliver {
			delivered = true
			call(c.Hooks.Delivered)
			c.Deliver(value)
		}
		pause := c.spacing(time.Since(started))
		if s.reset {
			call(c.Hooks.Reset)
			c.Log.Debug("consul index reset", "watch", c.Name, "last_index", meta.LastIndex)
			pause = max(pause, c.ResetPause)
		}
		if pause > 0 && !backoff.Wait(ctx, pause) {
			return nil
		}
	}
	return nil
}

// spacing is the wait that keeps MinInterval between the starts of two
// queries, given how long the last one took, plus up to a quarter of
// MinInterval of jitter so that many watches do not query in step.
func (w *Watch[T]) spacing(took time.Duration) time.Duration {
	rest := w.MinInterval - took
	if rest <= 0 {
		return 0
	}
	return rest + time.Duration(rand.Int64N(int64(w.MinInterval/4)+1)) //nolint:gosec // jitter needs no cryptographic randomness
}

// query runs one blocking query. Besides the server-side wait it has a
// client-side deadline, so a connection that silently died cannot hang the
// watch forever: Consul adds up to WaitTime/16 of jitter to the wait, and
// the deadline leaves room for that and for the answer to arrive.
func (w *Watch[T]) query(ctx context.Context, index uint64) (T, *api.QueryMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, w.WaitTime+w.WaitTime/16+queryDeadlineSlack)
	defer cancel()
	q := &api.QueryOptions{WaitIndex: index, WaitTime: w.WaitTime}
	return w.Fetch(q.WithContext(ctx))
}

func call(hook func()) {
	if hook != nil {
		hook()
	}
}
