package localenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrometheus scrapes a target of the test's own with the labels
// given, evaluates a recording rule over it, answers queries, refuses a
// malformed one, and restarts on the same port and data.
func TestPrometheus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/custom/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# TYPE demo_requests_total counter")
		fmt.Fprintln(w, `demo_requests_total{route="/a"} 3`)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = target.Serve(ln) }()
	t.Cleanup(func() { _ = target.Close() })

	dir := instanceDir(t)
	rules := filepath.Join(dir, "rules.yml")
	rule := "groups:\n  - name: demo\n    rules:\n      - record: job:demo_requests:sum\n        expr: sum by (job) (demo_requests_total)\n"
	if err := os.WriteFile(rules, []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := StartPrometheus(startCtx(t), PrometheusOptions{
		Dir:       filepath.Join(dir, "prometheus"),
		RuleFiles: []string{rules},
		Targets: []ScrapeTarget{{
			Job: "demo", Instance: "demo-1", Labels: map[string]string{"service": "demo"},
			Addr: ln.Addr().String(), Path: "/custom/metrics",
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(stopCtx(t)); err != nil {
			t.Error(err)
		}
	})

	// The labels of the target, and the rule over its series.
	waitSeries := func(expr string, want float64, labels map[string]string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		err := Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
			got, err := p.Query(ctx, expr)
			if err != nil {
				return StopPolling(err)
			}
			if len(got) != 1 || got[0].Value != want {
				return fmt.Errorf("%s = %+v, want one series of %v", expr, got, want)
			}
			for k, v := range labels {
				if got[0].Metric[k] != v {
					return StopPolling(fmt.Errorf("%s: label %s=%q, want %q (%v)", expr, k, got[0].Metric[k], v, got[0].Metric))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%v\nlog:\n%s", err, readFile(p.LogPath()))
		}
	}
	waitSeries("demo_requests_total", 3, map[string]string{"job": "demo", "instance": "demo-1", "service": "demo", "route": "/a"})
	waitSeries("job:demo_requests:sum", 3, map[string]string{"job": "demo"})
	if got, err := p.Query(t.Context(), "scalar(vector(2))"); err != nil || len(got) != 1 || got[0].Value != 2 {
		t.Errorf("scalar query: %+v, %v", got, err)
	}
	if _, err := p.Query(t.Context(), "sum(("); err == nil || !strings.Contains(err.Error(), "parse error") {
		t.Errorf("malformed query: error %v, want Prometheus's parse error", err)
	}

	// A restart keeps the port and the data: the samples before it are
	// still there at once.
	const samples = "count_over_time(demo_requests_total[1h])"
	before, err := p.Query(t.Context(), samples)
	if err != nil || len(before) != 1 {
		t.Fatalf("%s: %+v, %v", samples, before, err)
	}
	if err := p.Stop(stopCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(startCtx(t)); err != nil {
		t.Fatal(err)
	}
	after, err := p.Query(t.Context(), samples)
	if err != nil || len(after) != 1 || after[0].Value < before[0].Value {
		t.Fatalf("after the restart %s = %+v (%v), want at least %v", samples, after, err, before[0].Value)
	}
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
