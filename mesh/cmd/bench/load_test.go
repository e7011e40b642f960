package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The driver and the judging, against a local HTTP server that answers
// every tenth request with 503 and the others with X-Cache: HIT: the step
// counts each outcome, keeps latencies of successes only, and falls under
// minSuccess; the search then finds nothing held.
func TestStepCountsOutcomesAndFailsBelowMinSuccess(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Cache", "HIT")
	}))
	defer srv.Close()

	l := &loader{workers: 2, timeout: 5 * time.Second, targetP99: 1000, maxRSS: map[string]int64{}}
	p := benchPath{
		Name:    "local",
		Targets: static(vegeta.Target{Method: http.MethodGet, URL: srv.URL}),
		Judge:   expect(http.StatusOK, "HIT"),
		Rates:   []int{50},
	}
	client := newClient(l.timeout)
	defer client.CloseIdleConnections()
	step, err := l.measure(t.Context(), client, p, 50, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// About 50; a starved scheduler may leave the last one unsent.
	if step.Requests < 40 || step.Requests > 50 {
		t.Errorf("%d requests at 50 rps for 1s, want about 50", step.Requests)
	}
	failed := step.Requests / 10
	if step.Outcomes["503"] != failed || step.Outcomes["200"] != step.Requests-failed || step.Successes != step.Requests-failed {
		t.Errorf("outcomes %v, successes %d of %d", step.Outcomes, step.Successes, step.Requests)
	}
	if step.P50 <= 0 || step.P99 < step.P50 || step.Max < step.P99 {
		t.Errorf("latencies %+v are not ordered and positive", step.Latencies)
	}
	if l.held(step) {
		t.Error("a step with 90% success counts as held")
	}
	rep := Report{Paths: []PathResult{{Name: "local", Steps: []Step{step}}}}
	if len(rep.Failures()) != 1 {
		t.Errorf("Failures() = %q, want the step", rep.Failures())
	}

	// A cache answer other than the expected one is a failure too.
	wrong := expect(http.StatusOK, "MISS")
	if got := wrong(&vegeta.Result{Code: 200, Headers: http.Header{"X-Cache": {"HIT"}}}); got != "200:x-cache=HIT" {
		t.Errorf("judge = %q", got)
	}
	if got := wrong(&vegeta.Result{Code: 0, Error: "dial tcp: refused"}); got != "error" {
		t.Errorf("judge of a transport error = %q", got)
	}
}
