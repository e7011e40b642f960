package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayGrowsThenCaps(t *testing.T) {
	lowest := Policy{Min: 100 * time.Millisecond, Max: time.Second, RandN: func(int64) int64 { return 0 }}
	highest := lowest
	highest.RandN = func(n int64) int64 { return n - 1 }
	tests := []struct {
		failures int
		step     time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second}, // 1.6 s capped
		{64, time.Second},
		{1 << 20, time.Second}, // no overflow however long the outage
	}
	for _, tc := range tests {
		if got := lowest.Delay(tc.failures); got != tc.step/2 {
			t.Errorf("failures %d: lowest delay %v, want half the step %v", tc.failures, got, tc.step/2)
		}
		if got := highest.Delay(tc.failures); got != tc.step {
			t.Errorf("failures %d: highest delay %v, want the step %v", tc.failures, got, tc.step)
		}
	}
}

func TestDelayWithRealRandomnessStaysInRange(t *testing.T) {
	p := Policy{Min: time.Millisecond, Max: 8 * time.Millisecond}
	for i := range 1000 {
		if d := p.Delay(i%6 + 1); d < time.Millisecond/2 || d > 8*time.Millisecond {
			t.Fatalf("delay %v outside [0.5ms, 8ms]", d)
		}
	}
}

func TestWaitStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ctx, time.Hour) {
		t.Fatal("Wait reported a full wait on a cancelled context")
	}
	if !Wait(context.Background(), time.Millisecond) {
		t.Fatal("Wait reported a stop without one")
	}
}
