package system_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// BenchmarkTracingSampling measures what the ingress's sampling costs on
// a request that crosses every traced hop (ingress, users sidecar, users,
// its SQL): GET /api/users/users?limit=1, one request at a time, at
// samplingPercent 0, 1 and 100, and 0 again to show the noise. It prints
// the median and p99 of each:
//
//	go test ./e2e/system -run '^$' -bench BenchmarkTracingSampling -benchtime 1x
//
// PORTICO_BENCH_REQUESTS sets the requests per setting (1000). The stack
// always has Jaeger and the OTEL_* variables here; a stack without any
// trace backend is `make bench BENCH_FLAGS=-tracing=off`.
func BenchmarkTracingSampling(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("PORTICO_BENCH_REQUESTS")); err == nil && v > 0 {
		n = v
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-12s %8s %8s %8s\n", "sampling", "n", "p50", "p99")
	for i, percent := range []float64{0, 1, 100, 0} {
		label := strconv.FormatFloat(percent, 'f', -1, 64) + "%"
		if i == 3 {
			label += "-again"
		}
		doc := defaultDocument(b)
		generous := &edgeconfig.Limit{Requests: 10_000_000, Per: "minute"}
		doc.Defaults.RateLimit = &edgeconfig.RateLimit{
			Local:  &edgeconfig.TokenBucket{Requests: 100_000, Per: edgeconfig.Duration(time.Second), Burst: 100_000},
			Global: &edgeconfig.GlobalLimits{PerClient: generous, PerSubject: generous},
		}
		for i := range doc.Routes {
			doc.Routes[i].RateLimit = doc.Defaults.RateLimit
		}
		doc.Tracing.SamplingPercent = percent
		useEdgeConfig(b, doc)
		waitIngressSampling(b, percent)

		b.ResetTimer()
		took := make([]time.Duration, 0, n)
		for range n {
			begin := time.Now()
			r, err := sys.send(b.Context(), request{method: http.MethodGet, path: "/api/users/users?limit=1", token: sys.admin.Token})
			if err != nil || r.status != http.StatusOK {
				b.Fatalf("%v %v", err, r)
			}
			took = append(took, time.Since(begin))
		}
		b.StopTimer()
		slices.Sort(took)
		p50, p99 := took[len(took)/2], took[len(took)*99/100]
		fmt.Fprintf(&table, "%-12s %8d %8s %8s\n", label, n, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms@"+label)
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms@"+label)
	}
	b.Logf("GET /api/users/users?limit=1 through the ingress, one at a time:\n%s", table.String())
}

// waitIngressSampling waits until the ingress's routes sample percent
// (Envoy's config dump, in millionths).
func waitIngressSampling(tb testing.TB, percent float64) {
	tb.Helper()
	want := regexp.MustCompile(`"random_sampling":\s*\{\s*"denominator":\s*"MILLION"\s*\}`)
	if n := int(percent * 10_000); n > 0 {
		want = regexp.MustCompile(`"random_sampling":\s*\{\s*"numerator":\s*` + strconv.Itoa(n) + `,`)
	}
	err := localenv.Poll(tb.Context(), 100*time.Millisecond, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, sys.ingress.AdminURL()+"/config_dump?resource=dynamic_route_configs", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if !want.Match(body) {
			return fmt.Errorf("the ingress's routes do not sample %g %% yet", percent)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}
