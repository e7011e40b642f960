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
	var at position
	for ok := true; ok && ctx.Err() == nil; {
		ok = c.next(ctx, &at)
	}
	return nil
}

// position is where a Watch stands between two queries.
type position struct {
	index     uint64 // the WaitIndex of the next query
	delivered bool   // an answer was delivered
	failures  int    // consecutive failed queries
}

// next runs one query, delivers its answer if it is news and waits
// whatever must pass before the next query. It reports false when ctx
// ended meanwhile.
func (w *Watch[T]) next(ctx context.Context, at *position) bool {
	started := time.Now()
	value, meta, err := w.query(ctx, at.index)
	if ctx.Err() != nil {
		return false // shutting down: an interrupted query is no failure
	}
	if err == nil && meta == nil {
		err = errNoQueryMeta
	}
	if err != nil {
		at.failures++
		call(w.Hooks.Failed)
		// The next query starts from index 0 and so answers at once. The
		// agent that failed may come back as another one whose indexes
		// are lower than ours: waiting on our index there would block for
		// the whole WaitTime on stale data. One non-blocking query per
		// recovery is the price.
		at.index = 0
		delay := w.Backoff.Delay(at.failures)
		w.Log.Warn("consul query failed", "watch", w.Name, "failures", at.failures, "retry_in", delay, "err", err)
		return backoff.Wait(ctx, delay)
	}
	if at.failures > 0 {
		w.Log.Info("consul query recovered", "watch", w.Name, "after_failures", at.failures)
		at.failures = 0
	}

	s := nextIndex(at.index, meta.LastIndex, at.delivered)
	at.index = s.waitIndex
	if s.deliver {
		at.delivered = true
		call(w.Hooks.Delivered)
		w.Deliver(value)
	}
	pause := w.spacing(time.Since(started))
	if s.reset {
		call(w.Hooks.Reset)
		w.Log.Debug("consul index reset", "watch", w.Name, "last_index", meta.LastIndex)
		pause = max(pause, w.ResetPause)
	}
	return pause <= 0 || backoff.Wait(ctx, pause)
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
