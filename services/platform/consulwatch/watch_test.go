package consulwatch

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/services/platform/backoff"
)

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

// counts are what the hooks saw.
type counts struct{ failed, delivered, reset atomic.Int64 }

func (c *counts) hooks() Hooks {
	return Hooks{
		Failed:    func() { c.failed.Add(1) },
		Delivered: func() { c.delivered.Add(1) },
		Reset:     func() { c.reset.Add(1) },
	}
}

// runFake runs a Watch over the script until the script is exhausted, and
// returns what it delivered and what its hooks counted.
func runFake(t *testing.T, f *fakeQuery, log *slog.Logger) ([]string, *counts) {
	t.Helper()
	var (
		delivered []string
		n         counts
	)
	w := &Watch[string]{
		Name:       "fake",
		Log:        log,
		Fetch:      f.fetch,
		Deliver:    func(v string) { delivered = append(delivered, v) },
		WaitTime:   time.Minute,
		Backoff:    backoff.Policy{Min: time.Millisecond, Max: 4 * time.Millisecond},
		ResetPause: time.Millisecond,
		Hooks:      n.hooks(),
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-f.drained:
	case <-ctx.Done():
		t.Fatal("the watch did not consume its script")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil once its context ended", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not stop when its context ended")
	}
	return delivered, &n
}

func TestIndexDiscipline(t *testing.T) {
	f := newFakeQuery(
		answer{index: 10, value: "a"},
		answer{index: 10, value: "a"}, // wait timed out
		answer{index: 12, value: "b"},
		answer{index: 5, value: "c"}, // went backwards: reset
		answer{index: 6, value: "c"},
		answer{index: 0, value: "d"}, // zero: reset
		answer{index: 8, value: "d"},
	)
	delivered, n := runFake(t, f, slog.New(slog.DiscardHandler))

	if got, want := f.waitIndexes(), []uint64{0, 10, 10, 12, 0, 6, 0, 8}; !slices.Equal(got, want) {
		t.Errorf("wait indexes = %v, want %v", got, want)
	}
	if want := []string{"a", "b", "c", "c", "d", "d"}; !slices.Equal(delivered, want) {
		t.Errorf("delivered = %v, want %v", delivered, want)
	}
	if got := n.reset.Load(); got != 2 {
		t.Errorf("index resets = %v, want 2", got)
	}
	if got := n.delivered.Load(); got != 6 {
		t.Errorf("deliveries = %v, want 6", got)
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

func TestRetriesWithBackoff(t *testing.T) {
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
	delivered, n := runFake(t, f, slog.New(logs))

	if want := []string{"a", "b"}; !slices.Equal(delivered, want) {
		t.Errorf("delivered = %v, want %v", delivered, want)
	}
	// After a failure the query starts over from index 0: the agent may
	// have come back with lower indexes.
	if want := []uint64{0, 0, 0, 0, 3, 0, 4}; !slices.Equal(f.waitIndexes(), want) {
		t.Errorf("wait indexes = %v, want %v", f.waitIndexes(), want)
	}
	if got := n.failed.Load(); got != 4 {
		t.Errorf("failed queries = %v, want 4", got)
	}
	// The failure count, and with it the backoff, starts over after a
	// success.
	if want := []int64{1, 2, 3, 1}; !slices.Equal(logs.failureCounts(), want) {
		t.Errorf("logged failure counts = %v, want %v", logs.failureCounts(), want)
	}
}

func TestStopsDuringBackoff(t *testing.T) {
	var calls atomic.Int64
	called := make(chan struct{})
	w := &Watch[string]{
		Name: "fake",
		Fetch: func(*api.QueryOptions) (string, *api.QueryMeta, error) {
			if calls.Add(1) == 1 {
				close(called)
			}
			return "", nil, errors.New("down")
		},
		Deliver:  func(string) { t.Error("nothing should be delivered") },
		WaitTime: time.Minute,
		Backoff:  backoff.Policy{Min: time.Hour, Max: time.Hour},
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	// The first query has failed: from here on the watch can only be in
	// its hour-long backoff, which ending the context must cut short.
	<-called
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch kept sleeping after its context ended")
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("calls = %d, want 1: the retry came before the backoff", got)
	}
}

func TestRunNeedsFetchAndDeliver(t *testing.T) {
	if err := (&Watch[string]{Deliver: func(string) {}}).Run(t.Context()); err == nil {
		t.Error("Run without Fetch succeeded")
	}
	fetch := func(*api.QueryOptions) (string, *api.QueryMeta, error) { return "", nil, nil }
	if err := (&Watch[string]{Fetch: fetch}).Run(t.Context()); err == nil {
		t.Error("Run without Deliver succeeded")
	}
}

func TestDefaults(t *testing.T) {
	got := (&Watch[string]{WaitTime: time.Hour, Backoff: backoff.Policy{Min: time.Minute, Max: time.Second}}).withDefaults()
	if got.WaitTime != MaxWaitTime {
		t.Errorf("WaitTime = %v, want capped at Consul's %v", got.WaitTime, MaxWaitTime)
	}
	if got.Backoff.Max != time.Minute {
		t.Errorf("Backoff.Max = %v, want raised to Backoff.Min", got.Backoff.Max)
	}
	if got.ResetPause != time.Minute || got.Log == nil {
		t.Errorf("ResetPause = %v, Log = %v; want Backoff.Min and a logger", got.ResetPause, got.Log)
	}
	zero := (&Watch[string]{}).withDefaults()
	if zero.WaitTime != DefaultWaitTime || zero.Backoff.Min != DefaultMinBackoff || zero.Backoff.Max != DefaultMaxBackoff {
		t.Errorf("zero Watch defaults = %v, %+v", zero.WaitTime, zero.Backoff)
	}
}

func TestSpacing(t *testing.T) {
	w := &Watch[string]{MinInterval: 100 * time.Millisecond}
	for range 100 {
		if d := w.spacing(30 * time.Millisecond); d < 70*time.Millisecond || d > 95*time.Millisecond {
			t.Fatalf("spacing after a 30ms query = %v, want the 70ms left plus at most 25ms of jitter", d)
		}
	}
	if d := w.spacing(100 * time.Millisecond); d != 0 {
		t.Errorf("spacing after a query as long as MinInterval = %v, want 0", d)
	}
	if d := (&Watch[string]{}).spacing(0); d != 0 {
		t.Errorf("spacing without MinInterval = %v, want 0", d)
	}
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
