package catalog

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hashicorp/consul/api"
)

// fetchFunc runs one Consul query with the given options. The options carry
// the blocking index, the wait time and the context that interrupts it.
type fetchFunc[T any] func(q *api.QueryOptions) (T, *api.QueryMeta, error)

// blockingWatch repeats one Consul blocking query for as long as its
// context lives and hands every new result to deliver. It is the only
// place that knows the blocking-query discipline; every watch of the
// package is one of these.
type blockingWatch[T any] struct {
	kind    string // the metric label: "services", "health", "leaf", ...
	log     *slog.Logger
	metrics *metrics
	fetch   fetchFunc[T]
	// deliver receives each result whose index moved (and the first one).
	// It runs on the watch's goroutine and must not block for long.
	deliver func(T)

	waitTime time.Duration
	backoff  backoff
	// resetPause spaces out the queries after an index reset: a query
	// with index 0 does not block, so a server that keeps reporting 0
	// would otherwise be polled in a busy loop.
	resetPause time.Duration
}

// errNoQueryMeta would be a client bug; without an index the query cannot
// block, so it is treated as a failed query.
var errNoQueryMeta = errors.New("consul answered without query metadata")

// run blocks until ctx ends.
func (w *blockingWatch[T]) run(ctx context.Context) {
	var (
		index     uint64
		delivered bool
		failures  int
	)
	for ctx.Err() == nil {
		value, meta, err := w.query(ctx, index)
		if err == nil && meta == nil {
			err = errNoQueryMeta
		}
		if err != nil {
			if ctx.Err() != nil {
				return // shutting down: the interrupted query is no failure
			}
			failures++
			w.metrics.queryErrors.WithLabelValues(w.kind).Inc()
			// The next query starts from index 0 and so answers at once.
			// The agent that failed may come back as another one (a
			// restarted dev agent, a restored or rebuilt cluster) whose
			// indexes are lower than ours: waiting on our index there
			// would block for the whole WaitTime on stale data. One
			// non-blocking query per recovery is the price.
			index = 0
			delay := w.backoff.delay(failures)
			w.log.Warn("consul query failed", "watch", w.kind, "failures", failures, "retry_in", delay, "err", err)
			if !sleep(ctx, delay) {
				return
			}
			continue
		}
		if failures > 0 {
			w.log.Info("consul query recovered", "watch", w.kind, "after_failures", failures)
			failures = 0
		}

		step := nextIndex(index, meta.LastIndex, delivered)
		index = step.waitIndex
		if step.deliver {
			delivered = true
			w.metrics.updates.WithLabelValues(w.kind).Inc()
			w.deliver(value)
		}
		if step.reset {
			w.metrics.indexResets.WithLabelValues(w.kind).Inc()
			w.log.Debug("consul index reset", "watch", w.kind, "last_index", meta.LastIndex)
			if !sleep(ctx, w.resetPause) {
				return
			}
		}
	}
}

// query runs one blocking query. Besides the server-side wait it has a
// client-side deadline, so a connection that silently died cannot hang the
// watch forever: Consul adds up to WaitTime/16 of jitter to the wait, and
// the deadline leaves room for that and for the answer to arrive.
func (w *blockingWatch[T]) query(ctx context.Context, index uint64) (T, *api.QueryMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, w.waitTime+w.waitTime/16+queryDeadlineSlack)
	defer cancel()
	q := &api.QueryOptions{WaitIndex: index, WaitTime: w.waitTime}
	return w.fetch(q.WithContext(ctx))
}

// queryDeadlineSlack is how long after the longest possible wait a blocking
// query is abandoned.
const queryDeadlineSlack = 30 * time.Second

// indexStep is what to do with a query's answer.
type indexStep struct {
	waitIndex uint64 // the WaitIndex of the next query
	deliver   bool   // the answer is news
	reset     bool   // the index went backwards or was 0
}

// nextIndex applies Consul's rules for the index of the next blocking
// query, given the index waited on (prev), the answer's index (last) and
// whether any answer was delivered yet.
//
//   - An unchanged index means the wait timed out with nothing new.
//   - An index that went backwards (a restored snapshot, a new leader with
//     an older state, a recreated key) or that is 0 (which should not
//     happen, but then the query would never block) resets the wait to 0.
//     The answer itself is still current data, so it is delivered; content
//     comparison downstream drops it if nothing really changed.
//   - Otherwise wait on the new index.
func nextIndex(prev, last uint64, delivered bool) indexStep {
	switch {
	case last == 0 || last < prev:
		return indexStep{waitIndex: 0, deliver: true, reset: true}
	case delivered && last == prev:
		return indexStep{waitIndex: prev}
	default:
		return indexStep{waitIndex: last, deliver: true}
	}
}

// sleep waits for d or until ctx ends, and reports whether the caller
// should go on.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
