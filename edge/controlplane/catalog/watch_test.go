package catalog

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name       string
		prev, last uint64
		delivered  bool
		want       indexStep
	}{
		{"first answer", 0, 7, false, indexStep{waitIndex: 7, deliver: true}},
		{"index moved", 7, 9, true, indexStep{waitIndex: 9, deliver: true}},
		{"wait timed out", 9, 9, true, indexStep{waitIndex: 9}},
		{"same index but nothing delivered yet", 9, 9, false, indexStep{waitIndex: 9, deliver: true}},
		{"index went backwards", 9, 4, true, indexStep{waitIndex: 0, deliver: true, reset: true}},
		{"index is zero", 9, 0, true, indexStep{waitIndex: 0, deliver: true, reset: true}},
		{"index is zero on the first answer", 0, 0, false, indexStep{waitIndex: 0, deliver: true, reset: true}},
		{"after a reset", 0, 4, true, indexStep{waitIndex: 4, deliver: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextIndex(tt.prev, tt.last, tt.delivered); got != tt.want {
				t.Errorf("nextIndex(%d, %d, %v) = %+v, want %+v", tt.prev, tt.last, tt.delivered, got, tt.want)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	lowest := backoff{min: 100 * time.Millisecond, max: 2 * time.Second, randN: func(int64) int64 { return 0 }}
	highest := lowest
	highest.randN = func(n int64) int64 { return n - 1 }
	tests := []struct {
		failures int
		lo, hi   time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{5, 800 * time.Millisecond, 1600 * time.Millisecond},
		{6, time.Second, 2 * time.Second}, // capped
		{40, time.Second, 2 * time.Second},
		{1 << 20, time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		if got := lowest.delay(tt.failures); got != tt.lo {
			t.Errorf("lowest delay(%d) = %v, want %v", tt.failures, got, tt.lo)
		}
		if got := highest.delay(tt.failures); got != tt.hi {
			t.Errorf("highest delay(%d) = %v, want %v", tt.failures, got, tt.hi)
		}
	}
	random := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	for range 1000 {
		if d := random.delay(3); d < 200*time.Millisecond || d > 400*time.Millisecond {
			t.Fatalf("delay(3) = %v, outside [200ms, 400ms]", d)
		}
	}
}

// answer is one scripted reply of a fake query.
type answer struct {
	index uint64
	value string
	err   error
}

// fakeQuery replays answers and records the options of every call. When
// the script is exhausted it blocks like a real blocking query, until the
// query's context ends.
type fakeQuery struct {
	mu      sync.Mutex
	script  []answer
	calls   []api.QueryOptions
	drained chan struct{}
}

func newFakeQuery(script ...answer) *fakeQuery {
	return &fakeQuery{script: script, drained: make(chan struct{})}
}

func (f *fakeQuery) fetch(q *api.QueryOptions) (string, *api.QueryMeta, error) {
	f.mu.Lock()
	f.calls = append(f.calls, *q)
	if len(f.script) == 0 {
		select {
		case <-f.drained:
		default:
			close(f.drained)
		}
		f.mu.Unlock()
		<-q.Context().Done()
		return "", nil, q.Context().Err()
	}
	a := f.script[0]
	f.script = f.script[1:]
	f.mu.Unlock()
	if a.err != nil {
		return "", nil, a.err
	}
	return a.value, &api.QueryMeta{LastIndex: a.index}, nil
}

func (f *fakeQuery) waitIndexes() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var idx []uint64
	for _, c := range f.calls {
		idx = append(idx, c.WaitIndex)
	}
	return idx
}

// runFake runs a blockingWatch over the script until the script is
// exhausted, and returns what it delivered and its metrics.
func runFake(t *testing.T, f *fakeQuery, log *slog.Logger) ([]string, *metrics) {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var delivered []string
	w := &blockingWatch[string]{
		kind:       "fake",
		log:        log,
		metrics:    m,
		fetch:      f.fetch,
		deliver:    func(v string) { delivered = append(delivered, v) },
		waitTime:   time.Minute,
		backoff:    backoff{min: time.Millisecond, max: 4 * time.Millisecond},
		resetPause: time.Millisecond,
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx)
	}()
	select {
	case <-f.drained:
	case <-ctx.Done():
		t.Fatal("the watch did not consume its script")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not stop when its context ended")
	}
	return delivered, m
}

func TestBlockingWatchIndexDiscipline(t *testing.T) {
	f := newFakeQuery(
		answer{index: 10, value: "a"},
		answer{index: 10, value: "a"}, // wait timed out
		answer{index: 12, value: "b"},
		answer{index: 5, value: "c"}, // went backwards: reset
		answer{index: 6, value: "c"},
		answer{index: 0, value: "d"}, // zero: reset
		answer{index: 8, value: "d"},
	)
	delivered, m := runFake(t, f, slog.New(slog.DiscardHandler))

	wantIdx := []uint64{0, 10, 10, 12, 0, 6, 0, 8}
	if got := f.waitIndexes(); !equal(got, wantIdx) {
		t.Errorf("wait indexes = %v, want %v", got, wantIdx)
	}
	if want := []string{"a", "b", "c", "c", "d", "d"}; !equal(delivered, want) {
		t.Errorf("delivered = %v, want %v", delivered, want)
	}
	if got := metricValue(t, m.indexResets.WithLabelValues("fake")); got != 2 {
		t.Errorf("index resets = %v, want 2", got)
	}
	if got := metricValue(t, m.updates.WithLabelValues("fake")); got != 6 {
		t.Errorf("updates = %v, want 6", got)
	}
	for _, c := range f.calls {
		if c.WaitTime != time.Minute {
			t.Errorf("a query waits %v, want the configured 1m", c.WaitTime)
		}
		if c.Context() == context.Background() || c.Context() == nil {
			t.Error("a query carries no context, shutdown could not interrupt it")
		}
		if _, ok := c.Context().Deadline(); !ok {
			t.Error("a query has no deadline")
		}
	}
}

func TestBlockingWatchRetriesWithBackoff(t *testing.T) {
	boom := errors.New("connection refused")
	f := newFakeQuery(
		answer{err: boom},
		answer{err: boom},
		answer{err: boom},
		answer{index: 3, value: "a"},
		answer{err: boom},
		answer{index: 4, value: "b"},
	)
	logs := &recordingHandler{}
	delivered, m := runFake(t, f, slog.New(logs))

	if want := []string{"a", "b"}; !equal(delivered, want) {
		t.Errorf("delivered = %v, want %v", delivered, want)
	}
	// After a failure the query starts over from index 0: the agent may
	// have come back with lower indexes.
	if want := []uint64{0, 0, 0, 0, 3, 0, 4}; !equal(f.waitIndexes(), want) {
		t.Errorf("wait indexes = %v, want %v", f.waitIndexes(), want)
	}
	if got := metricValue(t, m.queryErrors.WithLabelValues("fake")); got != 4 {
		t.Errorf("query errors = %v, want 4", got)
	}
	// The failure count, and with it the backoff, starts over after a
	// success.
	if want := []int64{1, 2, 3, 1}; !equal(logs.failureCounts(), want) {
		t.Errorf("logged failure counts = %v, want %v", logs.failureCounts(), want)
	}
}

func TestBlockingWatchStopsDuringBackoff(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	w := &blockingWatch[string]{
		kind:    "fake",
		log:     slog.New(slog.DiscardHandler),
		metrics: m,
		fetch: func(*api.QueryOptions) (string, *api.QueryMeta, error) {
			calls++
			return "", nil, errors.New("down")
		},
		deliver:  func(string) { t.Error("nothing should be delivered") },
		waitTime: time.Minute,
		backoff:  backoff{min: time.Hour, max: time.Hour},
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch kept sleeping after its context ended")
	}
	if calls != 1 {
		t.Errorf("calls = %d, want 1", calls)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// recordingHandler keeps the "failures" attribute of every log record.
type recordingHandler struct {
	mu       sync.Mutex
	failures []int64
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "failures" {
			h.mu.Lock()
			h.failures = append(h.failures, a.Value.Int64())
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

func (h *recordingHandler) failureCounts() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int64(nil), h.failures...)
}

// metricValue reads a counter or gauge. (client_golang's testutil would do,
// but brings a module the project does not otherwise need.)
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither a counter nor a gauge", m.Desc())
	return 0
}
