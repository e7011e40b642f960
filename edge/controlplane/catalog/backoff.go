package catalog

import (
	"math/rand/v2"
	"time"
)

// backoff spaces out retries of a failing query: exponentially longer
// waits, capped, so a Consul outage is not hammered, with jitter, so the
// many watches of one control plane (and many control planes) do not retry
// in lockstep when Consul comes back.
type backoff struct {
	min, max time.Duration
	// randN returns a number in [0, n); nil uses math/rand/v2. Tests fix it.
	randN func(n int64) int64
}

// delay is the wait before retry number failures (1 for the first retry).
// It is "equal jitter": half of the exponential step is kept and the other
// half drawn at random, so the wait never collapses to nothing.
func (b backoff) delay(failures int) time.Duration {
	d := b.max
	// Doubling min more than 32 times would overflow long before it
	// matters: by then the cap applies anyway.
	if failures < 32 {
		if step := b.min << max(failures-1, 0); step > 0 && step < b.max {
			d = step
		}
	}
	half := d / 2
	randN := b.randN
	if randN == nil {
		randN = rand.Int64N
	}
	return half + time.Duration(randN(int64(d-half)+1))
}
