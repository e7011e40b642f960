package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// benchPath is one request path under test.
type benchPath struct {
	Name  string
	About string
	// Targets makes the requests of one step (a fresh sequence each time,
	// for paths that vary the URL).
	Targets func() vegeta.Targeter
	// Judge returns "" for a response the path expects, else the outcome
	// to count it under.
	Judge func(*vegeta.Result) string
	// Rates are the fixed rates measured.
	Rates []int
}

// loader drives the paths and reads what each step cost.
type loader struct {
	workers   int
	timeout   time.Duration
	procs     []watched
	targetP99 Millis
	// maxRSS keeps the most resident memory seen per process at the end
	// of a step.
	maxRSS map[string]int64
}

// newClient is one keep-alive client per path, shared by its steps, so a
// step starts on warm connections.
func newClient(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: 10_000,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		// A redirect is an answer to judge, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// attack sends requests to p at rate for d and returns what came back.
// Open loop: requests leave on schedule whether or not earlier ones were
// answered (vegeta starts more workers when all are busy).
func (l *loader) attack(ctx context.Context, client *http.Client, p benchPath, rate int, d time.Duration) (Step, []time.Duration) {
	atk := vegeta.NewAttacker(
		vegeta.Client(client),
		vegeta.KeepAlive(true),
		vegeta.Workers(uint64(l.workers)),
		vegeta.MaxBody(0), // read and discard bodies: connections stay reusable
		vegeta.Redirects(vegeta.NoFollow),
	)
	stopOnCancel := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stopOnCancel()

	step := Step{Rate: rate, Seconds: d.Seconds(), Outcomes: map[string]int{}}
	samples := make([]time.Duration, 0, int(float64(rate)*d.Seconds())+1)
	for res := range atk.Attack(p.Targets(), vegeta.Rate{Freq: rate, Per: time.Second}, d, p.Name) {
		step.Requests++
		if verdict := p.Judge(res); verdict != "" {
			step.Outcomes[verdict]++
			continue
		}
		step.Successes++
		step.Outcomes[strconv.Itoa(int(res.Code))]++
		samples = append(samples, res.Latency)
	}
	step.Served = float64(step.Successes) / d.Seconds()
	return step, samples
}

// measure runs one fixed-rate step and reads its CPU cost per process and
// the memory each holds at its end.
func (l *loader) measure(ctx context.Context, client *http.Client, p benchPath, rate int, d time.Duration) (Step, error) {
	before, err := sampleCPU(l.procs)
	if err != nil {
		return Step{}, err
	}
	step, samples := l.attack(ctx, client, p, rate, d)
	after, err := sampleCPU(l.procs)
	if err != nil {
		return Step{}, err
	}
	rss, err := sampleRSS(l.procs)
	if err != nil {
		return Step{}, err
	}
	for name, kb := range rss {
		l.maxRSS[name] = max(l.maxRSS[name], kb)
	}
	step.Latencies = summarise(samples)
	step.CPUPer1000 = cpuPer1000(before, after, step.Requests)
	return step, ctx.Err()
}

// held reports whether a step kept the latency target with enough
// successes.
func (l *loader) held(s Step) bool {
	return s.Requests > 0 && s.SuccessRatio() >= minSuccess && s.P99 <= l.targetP99
}

// maxProbeRate bounds the search: well past what two cores serve.
const maxProbeRate = 20_000

// search looks for the highest rate p holds, starting from what the
// fixed-rate steps showed: doubling above the best rate held until a probe
// fails, then halving the gap, within budget. A failed probe leaves a
// backlog, so the search pauses after it.
func (l *loader) search(ctx context.Context, client *http.Client, p benchPath, fixed []Step, probe, budget time.Duration) (int, []Probe) {
	lo, hi := 0, 0 // highest held, lowest failed (0: none yet)
	var probes []Probe
	record := func(s Step) {
		ok := l.held(s)
		probes = append(probes, Probe{Rate: s.Rate, P99: s.P99, Success: s.SuccessRatio(), Held: ok})
		switch {
		case ok && s.Rate > lo:
			lo = s.Rate
		case !ok && (hi == 0 || s.Rate < hi):
			hi = s.Rate
		}
	}
	for _, s := range fixed {
		record(s)
	}
	if hi != 0 && lo > hi { // a noisy step failed below one that held
		hi = 0
	}
	deadline := time.Now().Add(budget)
	for ctx.Err() == nil && time.Now().Add(probe).Before(deadline) {
		var next int
		switch {
		case hi == 0:
			next = max(lo*2, 1)
		case lo == 0:
			next = hi / 2
		default:
			next = (lo + hi) / 2
		}
		// Close enough: within 10% (or one request a second).
		if next < 1 || next > maxProbeRate || (hi != 0 && hi-lo <= max(hi/10, 1)) {
			break
		}
		s, samples := l.attack(ctx, client, p, next, probe)
		s.Latencies = summarise(samples)
		record(s)
		if hi != 0 && lo > hi {
			hi = 0
		}
		pause(ctx, settle(s, l))
	}
	return lo, probes
}

// settle is the pause after a step: longer after one that fell behind, so
// its backlog drains before the next step starts.
func settle(s Step, l *loader) time.Duration {
	if l.held(s) {
		return 500 * time.Millisecond
	}
	return 3 * time.Second
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// runPath warms p up, measures its fixed rates and searches its capacity.
func (l *loader) runPath(ctx context.Context, p benchPath, stepDur, probeDur, budget time.Duration, logf func(string, ...any)) (PathResult, error) {
	client := newClient(l.timeout)
	defer client.CloseIdleConnections()
	res := PathResult{Name: p.Name, About: p.About}
	// Warm-up, not recorded: connections, caches, lazily built state.
	l.attack(ctx, client, p, p.Rates[0], time.Second)
	pause(ctx, 500*time.Millisecond)
	for _, rate := range p.Rates {
		s, err := l.measure(ctx, client, p, rate, stepDur)
		if err != nil {
			return res, err
		}
		logf("  %-13s %5d rps: p50 %.2f p99 %.2f ms, %.1f%% ok", p.Name, rate, s.P50, s.P99, 100*s.SuccessRatio())
		res.Steps = append(res.Steps, s)
		pause(ctx, settle(s, l))
	}
	res.MaxRate, res.Probes = l.search(ctx, client, p, res.Steps, probeDur, budget)
	logf("  %-13s max %d rps at p99 <= %.0f ms", p.Name, res.MaxRate, l.targetP99)
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s: %w", p.Name, ctx.Err())
	}
	return res, nil
}
