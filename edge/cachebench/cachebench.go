// Package cachebench measures what the edge cache saves: the latency of
// cache hits and of misses on the same resource, taken side by side
// (alternating requests), so both see the same machine load.
package cachebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Config describes one measurement.
type Config struct {
	// URL is a cacheable GET, through the ingress or straight to the edge.
	URL string
	// Requests is how many hits and how many misses are measured.
	Requests int
	// Header is sent with every request (Authorization, or the
	// X-Portico-Upstream and identity headers when calling the edge).
	Header http.Header
	Client *http.Client
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
}

// Stats summarises one kind of request.
type Stats struct {
	N           int
	Median, P99 time.Duration
	Min, Max    time.Duration
}

// Result is a measurement.
type Result struct {
	Hit, Miss Stats
	// Misclassified counts requests answered otherwise than intended
	// (a hit that was not HIT, e.g. the entry expired; a miss that was
	// not MISS). They are left out of the statistics.
	Misclassified int
}

// missParam makes each miss request a distinct cache key; services
// ignore unknown query parameters.
const missParam = "_cachebench"

// Run measures. The hit URL is warmed first; then each round sends one
// miss (a fresh query string) and one hit.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Requests <= 0 {
		return Result{}, errors.New("cachebench: Requests must be positive")
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	base, err := url.Parse(cfg.URL)
	if err != nil {
		return Result{}, fmt.Errorf("cachebench: url: %w", err)
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)

	warm := false
	for range 20 {
		_, xcache, err := get(ctx, cfg, base.String())
		if err != nil {
			return Result{}, err
		}
		if xcache == "HIT" {
			warm = true
			break
		}
	}
	if !warm {
		return Result{}, errors.New("cachebench: the URL never became a cache HIT: is the route cached and the response cacheable?")
	}

	var hits, misses []time.Duration
	var res Result
	for i := range cfg.Requests {
		missURL := *base
		q := missURL.Query()
		q.Set(missParam, run+"-"+strconv.Itoa(i))
		missURL.RawQuery = q.Encode()
		took, xcache, err := get(ctx, cfg, missURL.String())
		if err != nil {
			return Result{}, err
		}
		if xcache == "MISS" {
			misses = append(misses, took)
		} else {
			res.Misclassified++
		}
		took, xcache, err = get(ctx, cfg, base.String())
		if err != nil {
			return Result{}, err
		}
		if xcache == "HIT" {
			hits = append(hits, took)
		} else {
			res.Misclassified++
		}
	}
	res.Hit, res.Miss = summarise(hits), summarise(misses)
	return res, nil
}

func get(ctx context.Context, cfg Config, u string) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	for k, vs := range cfg.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	start := time.Now()
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("cachebench: GET %s: %w", u, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		return 0, "", fmt.Errorf("cachebench: GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("cachebench: GET %s: status %d", u, resp.StatusCode)
	}
	return took, resp.Header.Get("X-Cache"), nil
}

func summarise(d []time.Duration) Stats {
	if len(d) == 0 {
		return Stats{}
	}
	slices.Sort(d)
	return Stats{
		N:      len(d),
		Median: quantile(d, 0.5),
		P99:    quantile(d, 0.99),
		Min:    d[0],
		Max:    d[len(d)-1],
	}
}

// quantile is the nearest-rank quantile of sorted d.
func quantile(d []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// Print writes the result as a small table with the miss/hit ratios.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, "%-6s %6s %10s %10s %10s %10s\n", "", "n", "median", "p99", "min", "max")
	for _, row := range []struct {
		name string
		s    Stats
	}{{"hit", r.Hit}, {"miss", r.Miss}} {
		fmt.Fprintf(w, "%-6s %6d %10s %10s %10s %10s\n", row.name, row.s.N,
			round(row.s.Median), round(row.s.P99), round(row.s.Min), round(row.s.Max))
	}
	fmt.Fprintf(w, "miss/hit ratio: median %.2fx, p99 %.2fx", ratio(r.Miss.Median, r.Hit.Median), ratio(r.Miss.P99, r.Hit.P99))
	if r.Misclassified > 0 {
		fmt.Fprintf(w, " (%d requests not answered as intended were left out)", r.Misclassified)
	}
	fmt.Fprintln(w)
}

func round(d time.Duration) string { return d.Round(time.Microsecond).String() }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
