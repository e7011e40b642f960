// Package backoff is the one retry spacing of every Portico loop that
// talks to a server that may be gone (Consul, RabbitMQ, PostgreSQL, Redis):
// exponentially longer waits, capped, so an outage is not hammered, with
// jitter, so many loops (and many processes) do not retry in lockstep when
// the server comes back.
//
// A Policy is a pure function of the number of consecutive failures, so a
// loop keeps its own count (and resets it on success) and tests can fix
// the random source.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy spaces out retries.
type Policy struct {
	// Min is the first wait's scale; Max caps every wait.
	Min, Max time.Duration
	// RandN returns a number in [0, n); nil uses math/rand/v2. Tests fix it.
	RandN func(n int64) int64
}

// Delay is the wait before retry number failures (1 for the first retry).
// It is "equal jitter": half of the exponential step is kept and the other
// half drawn at random, so the wait never collapses to nothing.
func (p Policy) Delay(failures int) time.Duration {
	d := p.Max
	// Doubling Min more than 32 times would overflow long before it
	// matters: by then the cap applies anyway.
	if failures < 32 {
		if step := p.Min << max(failures-1, 0); step > 0 && step < p.Max {
			d = step
		}
	}
	half := d / 2
	randN := p.RandN
	if randN == nil {
		randN = rand.Int64N
	}
	return half + time.Duration(randN(int64(d-half)+1))
}

// Wait sleeps for d, or until ctx is done; it reports whether the whole
// wait passed (false: the caller should stop).
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
