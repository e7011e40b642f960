package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report is one run of the benchmark, as printed and as written to
// .run/bench/<timestamp>.json for a later -compare.
type Report struct {
	Started  time.Time       `json:"started"`
	Commit   string          `json:"commit,omitempty"`
	CPUs     int             `json:"cpus"`
	Settings Settings        `json:"settings"`
	Phases   []Phase         `json:"phases"`
	Paths    []PathResult    `json:"paths"`
	Procs    []ProcessMemory `json:"processes"`
}

// Settings are the flags that shape the numbers.
type Settings struct {
	Rates      []int   `json:"rates"`
	LoginRates []int   `json:"login_rates"`
	StepSecs   float64 `json:"step_seconds"`
	ProbeSecs  float64 `json:"probe_seconds"`
	TargetP99  Millis  `json:"target_p99_ms"`
	Workers    int     `json:"workers"`
	CPUAtRate  int     `json:"cpu_at_rate"`
	// Tracing is -tracing: off, or the ingress's sampling percent.
	Tracing string `json:"tracing,omitempty"`
}

// Phase is one part of the run and how long it took.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// PathResult is everything measured on one path.
type PathResult struct {
	Name  string `json:"name"`
	About string `json:"about"`
	Steps []Step `json:"steps"`
	// MaxRate is the highest rate the search saw held (p99 within the
	// target, success at least minSuccess); 0 when none was.
	MaxRate int     `json:"max_rate"`
	Probes  []Probe `json:"probes"`
}

// Step is one fixed-rate measurement.
type Step struct {
	Rate      int     `json:"rate"`
	Seconds   float64 `json:"seconds"`
	Requests  int     `json:"requests"`
	Successes int     `json:"successes"`
	// Served is successful responses per second of the step.
	Served float64 `json:"served_per_second"`
	Latencies
	// Outcomes counts responses by status code, "error" for transport
	// failures and "status:x-cache" when the cache answered otherwise
	// than the path expects.
	Outcomes map[string]int `json:"outcomes"`
	// CPUPer1000 is each process's CPU seconds (user+system) spent during
	// the step, per 1000 requests sent.
	CPUPer1000 map[string]float64 `json:"cpu_seconds_per_1000"`
}

// SuccessRatio is the share of requests answered as the path expects.
func (s Step) SuccessRatio() float64 { return ratio(float64(s.Successes), float64(s.Requests)) }

// Probe is one short step of the capacity search.
type Probe struct {
	Rate    int     `json:"rate"`
	P99     Millis  `json:"p99_ms"`
	Success float64 `json:"success"`
	Held    bool    `json:"held"`
}

// ProcessMemory is a process's resident memory idle (after start-up and
// set-up, before any load) and the most seen at the end of a step.
type ProcessMemory struct {
	Name      string `json:"name"`
	PIDs      []int  `json:"pids"`
	IdleRSSKB int64  `json:"idle_rss_kb"`
	LoadRSSKB int64  `json:"load_rss_kb"`
}

// minSuccess is the success ratio below which a step counts as failed:
// a path that errors must not look fast.
const minSuccess = 0.99

// Failures lists the paths that failed at their lowest fixed rate: such a
// path is broken, not busy, and the run must not pass. A path that holds
// its lowest rate and fails only above it is saturated (Saturated), which
// is a result like any other.
func (r Report) Failures() []string {
	var out []string
	for _, p := range r.Paths {
		if len(p.Steps) > 0 && p.Steps[0].SuccessRatio() < minSuccess {
			out = append(out, stepFailure(p.Name, p.Steps[0]))
		}
	}
	return out
}

// Saturated lists the steps above a path's lowest rate that fell under
// minSuccess: where the path stopped keeping up.
func (r Report) Saturated() []string {
	var out []string
	for _, p := range r.Paths {
		for i, s := range p.Steps {
			if i > 0 && s.SuccessRatio() < minSuccess {
				out = append(out, stepFailure(p.Name, s))
			}
		}
	}
	return out
}

func stepFailure(path string, s Step) string {
	return fmt.Sprintf("%s at %d rps: %.1f%% success (%s)", path, s.Rate, 100*s.SuccessRatio(), outcomes(s.Outcomes))
}

// path returns the path named name.
func (r Report) path(name string) (PathResult, bool) {
	i := slices.IndexFunc(r.Paths, func(p PathResult) bool { return p.Name == name })
	if i < 0 {
		return PathResult{}, false
	}
	return r.Paths[i], true
}

// step returns the path's step at rate.
func (p PathResult) step(rate int) (Step, bool) {
	i := slices.IndexFunc(p.Steps, func(s Step) bool { return s.Rate == rate })
	if i < 0 {
		return Step{}, false
	}
	return p.Steps[i], true
}

// nearestStep returns the step whose rate is closest to rate.
func (p PathResult) nearestStep(rate int) (Step, bool) {
	if len(p.Steps) == 0 {
		return Step{}, false
	}
	best := p.Steps[0]
	for _, s := range p.Steps[1:] {
		if abs(s.Rate-rate) < abs(best.Rate-rate) {
			best = s
		}
	}
	return best, true
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// baseline is the path every other is compared with.
const baseline = "direct"

// Print writes the human report: latency at fixed rates, capacity, CPU
// per request and memory, each a fixed-width table.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "Portico request-path benchmark, %s, commit %s, %d CPUs\n", r.Started.UTC().Format(time.RFC3339), orDash(r.Commit), r.CPUs)
	fmt.Fprintf(w, "open loop (vegeta, keep-alive, %d initial workers), %gs per fixed-rate step\n\n", r.Settings.Workers, r.Settings.StepSecs)
	r.printLatency(w)
	r.printCapacity(w)
	r.printCPU(w)
	r.printMemory(w)
	r.printPhases(w)
}

func (r Report) printLatency(w io.Writer) {
	fmt.Fprintf(w, "LATENCY (ms) at fixed rates; xP50/xP99 = ratio to %q at the same rate; ! = under %.0f%% success\n", baseline, 100*minSuccess)
	fmt.Fprintf(w, "%-13s %6s %9s %7s %8s %8s %8s %8s %7s %7s\n", "PATH", "RATE", "SERVED/s", "OK%", "P50", "P90", "P99", "MAX", "xP50", "xP99")
	base, _ := r.path(baseline)
	for _, p := range r.Paths {
		for _, s := range p.Steps {
			flag := " "
			if s.SuccessRatio() < minSuccess {
				flag = "!"
			}
			x50, x99 := "-", "-"
			if b, ok := base.step(s.Rate); ok {
				x50 = fmtRatio(ratio(float64(s.P50), float64(b.P50)))
				x99 = fmtRatio(ratio(float64(s.P99), float64(b.P99)))
			}
			fmt.Fprintf(w, "%-13s %6d %9.1f %6.1f%s %8.2f %8.2f %8.2f %8.2f %7s %7s\n",
				p.Name, s.Rate, s.Served, 100*s.SuccessRatio(), flag, s.P50, s.P90, s.P99, s.Max, x50, x99)
		}
	}
	fmt.Fprintln(w)
	for _, p := range r.Paths {
		fmt.Fprintf(w, "  %-13s %s\n", p.Name, p.About)
	}
	fmt.Fprintln(w)
}

func (r Report) printCapacity(w io.Writer) {
	fmt.Fprintf(w, "CAPACITY: highest rate held with p99 <= %.0f ms and >= %.0f%% success (%gs probes)\n", r.Settings.TargetP99, 100*minSuccess, r.Settings.ProbeSecs)
	fmt.Fprintf(w, "%-13s %8s %9s  %s\n", "PATH", "MAX RPS", "x direct", "PROBES (rate:p99 ms, * = held)")
	base, _ := r.path(baseline)
	for _, p := range r.Paths {
		var probes []string
		for _, pr := range p.Probes {
			mark := ""
			if pr.Held {
				mark = "*"
			}
			probes = append(probes, fmt.Sprintf("%d:%.1f%s", pr.Rate, pr.P99, mark))
		}
		fmt.Fprintf(w, "%-13s %8d %9s  %s\n", p.Name, p.MaxRate, fmtRatio(ratio(float64(p.MaxRate), float64(base.MaxRate))), strings.Join(probes, " "))
	}
	fmt.Fprintln(w)
}

func (r Report) printCPU(w io.Writer) {
	fmt.Fprintf(w, "CPU seconds per 1000 requests, per process, at each path's step nearest %d rps (TOTAL leaves out %s)\n", r.Settings.CPUAtRate, selfName)
	steps := make([]Step, len(r.Paths))
	fmt.Fprintf(w, "%-18s", "PROCESS")
	for i, p := range r.Paths {
		steps[i], _ = p.nearestStep(r.Settings.CPUAtRate)
		fmt.Fprintf(w, " %13s", truncate(p.Name, 13))
	}
	fmt.Fprintf(w, "\n%-18s", "")
	for _, s := range steps {
		fmt.Fprintf(w, " %13s", fmt.Sprintf("@%d rps", s.Rate))
	}
	fmt.Fprintln(w)
	totals := make([]float64, len(r.Paths))
	for _, proc := range r.processNames() {
		fmt.Fprintf(w, "%-18s", proc)
		for i, s := range steps {
			v, ok := s.CPUPer1000[proc]
			if proc != selfName {
				totals[i] += v
			}
			if !ok {
				fmt.Fprintf(w, " %13s", "-")
				continue
			}
			fmt.Fprintf(w, " %13.3f", v)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-18s", "TOTAL (stack)")
	for _, t := range totals {
		fmt.Fprintf(w, " %13.3f", t)
	}
	fmt.Fprintf(w, "\n\n")
}

// processNames lists the processes in the order of the memory table.
func (r Report) processNames() []string {
	names := make([]string, 0, len(r.Procs))
	for _, p := range r.Procs {
		names = append(names, p.Name)
	}
	return names
}

func (r Report) printMemory(w io.Writer) {
	fmt.Fprintln(w, "MEMORY (RSS, MB): idle before load, and the most seen at the end of a step")
	fmt.Fprintf(w, "%-18s %-16s %9s %9s\n", "PROCESS", "PIDS", "IDLE", "LOAD")
	for _, p := range r.Procs {
		pids := make([]string, len(p.PIDs))
		for i, pid := range p.PIDs {
			pids[i] = strconv.Itoa(pid)
		}
		fmt.Fprintf(w, "%-18s %-16s %9.1f %9.1f\n", p.Name, truncate(strings.Join(pids, ","), 16), float64(p.IdleRSSKB)/1024, float64(p.LoadRSSKB)/1024)
	}
	fmt.Fprintln(w)
}

func (r Report) printPhases(w io.Writer) {
	fmt.Fprintln(w, "PHASES")
	total := 0.0
	for _, ph := range r.Phases {
		fmt.Fprintf(w, "  %-34s %7.1fs\n", ph.Name, ph.Seconds)
		total += ph.Seconds
	}
	fmt.Fprintf(w, "  %-34s %7.1fs\n", "total", total)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func fmtRatio(x float64) string {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// outcomes prints the outcome counts, most frequent first.
func outcomes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// Save writes the report as JSON into dir, named by its start time, and
// returns the file's path.
func (r Report) Save(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, r.Started.UTC().Format("20060102T150405Z")+".json")
	return path, os.WriteFile(path, append(b, '\n'), 0o600) //nolint:gosec // under the -out folder the user chose
}

// LoadReport reads a report written by Save.
func LoadReport(path string) (Report, error) {
	var r Report
	b, err := os.ReadFile(path) //nolint:gosec // the file the user named with -compare
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Compare prints old against new, benchstat-style: for every path and rate
// both runs measured, each metric's old and new value and the change.
// Lower is better for every metric but served/s and max rps.
func Compare(w io.Writer, old, cur Report) {
	fmt.Fprintf(w, "old: %s (commit %s)\nnew: %s (commit %s)\n\n",
		old.Started.UTC().Format(time.RFC3339), orDash(old.Commit), cur.Started.UTC().Format(time.RFC3339), orDash(cur.Commit))
	fmt.Fprintf(w, "%-13s %6s %-14s %10s %10s %9s\n", "PATH", "RATE", "METRIC", "OLD", "NEW", "DELTA")
	row := func(path, rate, metric string, o, n float64) {
		fmt.Fprintf(w, "%-13s %6s %-14s %10.3f %10.3f %9s\n", path, rate, metric, o, n, delta(o, n))
	}
	for _, np := range cur.Paths {
		op, ok := old.path(np.Name)
		if !ok {
			fmt.Fprintf(w, "%-13s %6s (not in old)\n", np.Name, "")
			continue
		}
		for _, ns := range np.Steps {
			was, ok := op.step(ns.Rate)
			if !ok {
				continue
			}
			rate := strconv.Itoa(ns.Rate)
			row(np.Name, rate, "p50 ms", float64(was.P50), float64(ns.P50))
			row(np.Name, rate, "p90 ms", float64(was.P90), float64(ns.P90))
			row(np.Name, rate, "p99 ms", float64(was.P99), float64(ns.P99))
			row(np.Name, rate, "success %", 100*was.SuccessRatio(), 100*ns.SuccessRatio())
			row(np.Name, rate, "cpu s/1000", stackCPU(was.CPUPer1000), stackCPU(ns.CPUPer1000))
		}
		row(np.Name, "-", "max rps", float64(op.MaxRate), float64(np.MaxRate))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-18s %10s %10s %9s %10s %10s %9s\n", "PROCESS RSS MB", "OLD IDLE", "NEW IDLE", "DELTA", "OLD LOAD", "NEW LOAD", "DELTA")
	for _, np := range cur.Procs {
		i := slices.IndexFunc(old.Procs, func(p ProcessMemory) bool { return p.Name == np.Name })
		if i < 0 {
			continue
		}
		op := old.Procs[i]
		oi, ni := float64(op.IdleRSSKB)/1024, float64(np.IdleRSSKB)/1024
		ol, nl := float64(op.LoadRSSKB)/1024, float64(np.LoadRSSKB)/1024
		fmt.Fprintf(w, "%-18s %10.1f %10.1f %9s %10.1f %10.1f %9s\n", np.Name, oi, ni, delta(oi, ni), ol, nl, delta(ol, nl))
	}
}

// delta is the relative change from o to n, "~" when both are zero.
func delta(o, n float64) string {
	if o == n {
		return "~"
	}
	if o == 0 {
		return "new"
	}
	return fmt.Sprintf("%+.1f%%", 100*(n-o)/o)
}

// stackCPU is the CPU the stack spent, the load generator's own left out.
func stackCPU(m map[string]float64) float64 {
	total := 0.0
	for name, v := range m {
		if name != selfName {
			total += v
		}
	}
	return total
}
