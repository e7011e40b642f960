package system_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// edgeMetric sums the samples of the edge's Prometheus series whose name
// is name and whose labels include every given `key="value"` pair. The
// edge's /metrics is an operator's view, read here only to know when an
// event was consumed; what clients see is checked through the ingress.
func edgeMetric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	v, err := sys.edgeMetric(ctx, name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (s *system) edgeMetric(ctx context.Context, name string, labels ...string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.edgeURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("edge /metrics: %d", resp.StatusCode)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		series, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		metric, labelText, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(labelText, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, fmt.Errorf("edge /metrics: %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// appliedPurges is the number of events the edge consumed and applied.
func appliedPurges(t *testing.T) float64 {
	t.Helper()
	return edgeMetric(t, "edge_purge_events_total", `result="applied"`)
}

// waitPurgesAfter waits until the edge applied more than before events.
func waitPurgesAfter(t *testing.T, before float64, what string) {
	t.Helper()
	localenvtest.Eventually(t, 20*time.Second, 20*time.Millisecond, what, func(context.Context) error {
		if n := appliedPurges(t); n <= before {
			return fmt.Errorf("%v events applied, want more than %v", n, before)
		}
		return nil
	})
}
