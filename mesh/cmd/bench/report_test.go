package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPercentileIsTheNearestRank(t *testing.T) {
	// 1..100 ms: the p-th percentile of 100 samples is the p-th sample.
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p90 of 100", hundred, 90, 90 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"p99.9 rounds up", hundred, 99.9, 100 * time.Millisecond},
		{"tiny p is the min", hundred, 0.1, time.Millisecond},
		{"p50 of 4 is the 2nd", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"p51 of 4 is the 3rd", []time.Duration{1, 2, 3, 4}, 51, 3},
		{"p99 of 1", []time.Duration{7}, 99, 7},
		{"empty", nil, 99, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.samples, tc.p); got != tc.want {
				t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestSummariseSortsAndConverts(t *testing.T) {
	samples := []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 500 * time.Microsecond}
	got := summarise(samples)
	want := Latencies{P50: 1, P90: 3, P99: 3, Max: 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summarise (-want +got):\n%s", diff)
	}
}

func sampleReport() Report {
	step := func(rate, requests, ok int, p50, p99 Millis, cpu map[string]float64) Step {
		return Step{Rate: rate, Seconds: 5, Requests: requests, Successes: ok, Served: float64(ok) / 5,
			Latencies: Latencies{P50: p50, P90: p50, P99: p99, Max: p99}, Outcomes: map[string]int{"200": ok, "503": requests - ok},
			CPUPer1000: cpu}
	}
	return Report{
		Started: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC), Commit: "abc123", CPUs: 2,
		Settings: Settings{Rates: []int{250, 500}, StepSecs: 5, ProbeSecs: 2, TargetP99: 10, Workers: 16, CPUAtRate: 500},
		Phases:   []Phase{{Name: "stack up", Seconds: 40}},
		Paths: []PathResult{
			{Name: "direct", About: "straight", MaxRate: 2000, Steps: []Step{
				step(250, 1250, 1250, 0.5, 1, map[string]float64{"users": 0.1}),
				step(500, 2500, 2500, 0.5, 2, map[string]float64{"users": 0.1}),
			}, Probes: []Probe{{Rate: 1000, P99: 3, Success: 1, Held: true}, {Rate: 2000, P99: 8, Success: 1, Held: true}}},
			{Name: "ingress-full", About: "through", MaxRate: 500, Steps: []Step{
				step(250, 1250, 1250, 2, 5, map[string]float64{"users": 0.1, "ingress-envoy": 0.3}),
				step(500, 2500, 2400, 3, 14, map[string]float64{"users": 0.1, "ingress-envoy": 0.4, selfName: 0.2}),
			}},
		},
		Procs: []ProcessMemory{
			{Name: "ingress-envoy", PIDs: []int{10}, IdleRSSKB: 40960, LoadRSSKB: 51200},
			{Name: "users", PIDs: []int{11}, IdleRSSKB: 20480, LoadRSSKB: 30720},
			{Name: selfName, PIDs: []int{12}, IdleRSSKB: 10240, LoadRSSKB: 10240},
		},
	}
}

func TestReportPrintsRatiosToDirectAndFlagsFailures(t *testing.T) {
	var out bytes.Buffer
	sampleReport().Print(&out)
	text := out.String()
	for _, want := range []string{
		// ingress-full at 500: p50 3/0.5 = 6.00, p99 14/2 = 7.00, 96% flagged.
		"ingress-full     500     480.0   96.0!     3.00     3.00    14.00    14.00    6.00    7.00",
		"direct           250     250.0  100.0      0.50     0.50     1.00     1.00    1.00    1.00",
		// capacity: 500/2000.
		"ingress-full       500      0.25",
		"1000:3.0* 2000:8.0*",
		// CPU at the 500 step: ingress-envoy 0.4, total 0.5.
		"ingress-envoy",
		// The load generator is shown but not counted in the stack's total.
		"bench (vegeta)                 -         0.200",
		"TOTAL (stack)              0.100         0.500",
		strings.Repeat(" ", 24) + "@500 rps      @500 rps",
		"ingress-envoy      10                    40.0      50.0",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	// ingress-full held 250 rps and fell to 96% at 500: saturated, not
	// broken.
	rep := sampleReport()
	if failed := rep.Failures(); len(failed) != 0 {
		t.Errorf("Failures() = %q, want none", failed)
	}
	saturated := rep.Saturated()
	if len(saturated) != 1 || !strings.Contains(saturated[0], "ingress-full at 500 rps: 96.0% success (200×2400 503×100)") {
		t.Errorf("Saturated() = %q", saturated)
	}
	// A path that fails at its lowest rate is broken.
	rep.Paths[1].Steps[0], rep.Paths[1].Steps[1] = rep.Paths[1].Steps[1], rep.Paths[1].Steps[0]
	if failed := rep.Failures(); len(failed) != 1 || !strings.Contains(failed[0], "ingress-full at 500 rps") {
		t.Errorf("Failures() with the failing step first = %q", failed)
	}
}

func TestCompareShowsOldNewAndDelta(t *testing.T) {
	old := sampleReport()
	cur := sampleReport()
	cur.Paths[1].Steps[1].P50 = 1.5 // halved
	cur.Paths[1].MaxRate = 1000     // doubled
	cur.Procs[1].IdleRSSKB = 10240  // halved
	dir := t.TempDir()
	oldPath, err := old.Save(filepath.Join(dir, "old"))
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadReport(oldPath)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(old, loaded); diff != "" {
		t.Fatalf("JSON round trip (-saved +loaded):\n%s", diff)
	}
	var out bytes.Buffer
	Compare(&out, loaded, cur)
	text := out.String()
	for _, want := range []string{
		"ingress-full     500 p50 ms              3.000      1.500    -50.0%",
		"ingress-full     250 p50 ms              2.000      2.000         ~",
		"ingress-full       - max rps           500.000   1000.000   +100.0%",
		"ingress-full     500 success %          96.000     96.000         ~",
		"ingress-full     500 cpu s/1000          0.500      0.500         ~",
		"users                    20.0       10.0    -50.0%       30.0       30.0         ~",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("comparison lacks %q:\n%s", want, text)
		}
	}
}

func TestParseRates(t *testing.T) {
	got, err := parseRates("1000, 250,500,250")
	if err != nil || !cmp.Equal(got, []int{250, 500, 1000}) {
		t.Errorf("parseRates = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "fast", "10,-1"} {
		if _, err := parseRates(bad); err == nil {
			t.Errorf("parseRates(%q) accepted", bad)
		}
	}
}
