package main

import (
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of latencies by the
// nearest-rank method: the smallest sample such that at least p% of the
// samples are at or below it. It is exact, not estimated (vegeta's own
// metrics estimate quantiles), so a p99 over 1250 samples is the 1238th
// smallest. latencies must be sorted; an empty slice gives 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 || p <= 0 {
		return 0
	}
	// rank = ceil(p/100 * n), computed in integers to avoid 0.99*100
	// rounding to 98.99999.
	rank := int((int64(p*1000)*int64(n) + 100_000 - 1) / 100_000)
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Latencies summarises the latencies of the successful requests of a step.
type Latencies struct {
	P50 Millis `json:"p50_ms"`
	P90 Millis `json:"p90_ms"`
	P99 Millis `json:"p99_ms"`
	Max Millis `json:"max_ms"`
}

// summarise sorts samples in place and takes its percentiles.
func summarise(samples []time.Duration) Latencies {
	slices.Sort(samples)
	if len(samples) == 0 {
		return Latencies{}
	}
	return Latencies{
		P50: toMillis(Percentile(samples, 50)),
		P90: toMillis(Percentile(samples, 90)),
		P99: toMillis(Percentile(samples, 99)),
		Max: toMillis(samples[len(samples)-1]),
	}
}

// Millis is a duration in milliseconds, as written in the JSON results.
type Millis float64

func toMillis(d time.Duration) Millis { return Millis(float64(d) / float64(time.Millisecond)) }

// ratio is a/b, or 0 when b is 0 (nothing to compare against).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
