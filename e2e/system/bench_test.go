package system_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/cachebench"
	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// BenchmarkCacheThroughIngress measures, through the ingress, the latency
// of edge cache hits and misses on one product, side by side: each round
// sends a miss (a unique query parameter, which products ignores and the
// cache keys on) and then a hit, one request at a time. It prints the
// median and p99 of each and the miss/hit ratios (make bench-cache):
//
//	go test ./e2e/system -run '^$' -bench BenchmarkCacheThroughIngress -benchtime 1x
//
// PORTICO_BENCH_REQUESTS sets the number of hits and of misses (500).
//
// The default limits (600 requests a minute per user, a 200/s bucket per
// route) would throttle a thousand requests in seconds, so the benchmark
// runs the default configuration with generous limits; the rate-limit
// check itself stays on every request, as in production.
func BenchmarkCacheThroughIngress(b *testing.B) {
	n := 500
	if v, err := strconv.Atoi(os.Getenv("PORTICO_BENCH_REQUESTS")); err == nil && v > 0 {
		n = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	doc := defaultDocument(b)
	generous := &edgeconfig.Limit{Requests: 10_000_000, Per: "minute"}
	doc.Defaults.RateLimit = &edgeconfig.RateLimit{
		Local:  &edgeconfig.TokenBucket{Requests: 100_000, Per: edgeconfig.Duration(time.Second), Burst: 100_000},
		Global: &edgeconfig.GlobalLimits{PerClient: generous, PerSubject: generous},
	}
	useEdgeConfig(b, doc)

	token := sys.alice.Token
	created, err := sys.send(ctx, request{method: http.MethodPost, path: "/api/products/products", token: token,
		body: `{"name": "Bench lamp", "description": "benchmarked", "price": "9.99", "stock_quantity": 1}`})
	if err != nil || created.status != http.StatusCreated {
		b.Fatalf("create the benchmark product: %v %s", err, created)
	}
	var p product
	if err := decodeInto(created.body, &p); err != nil {
		b.Fatal(err)
	}
	path := productPath(p.ID)
	// The generous limits are in force once the ingress reports them.
	if err := localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		r, err := sys.send(ctx, request{method: http.MethodGet, path: path, token: token})
		if err != nil {
			return err
		}
		if limit := r.header.Get("X-Ratelimit-Limit"); r.status != http.StatusOK || !strings.Contains(limit, "10000000") {
			return fmt.Errorf("%d, X-RateLimit-Limit %q", r.status, limit)
		}
		return nil
	}); err != nil {
		b.Fatalf("benchmark limits not in force: %v", err)
	}

	b.ResetTimer()
	res, err := cachebench.Run(ctx, cachebench.Config{
		URL: sys.ingressURL + path, Requests: n, Header: http.Header{"Authorization": {"Bearer " + token}},
		Client: client, Timeout: 10 * time.Second,
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	var table strings.Builder
	res.Print(&table)
	b.Logf("GET %s through the ingress, %d hits and %d misses alternating:\n%s", path, res.Hit.N, res.Miss.N, table.String())
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(res.Hit.Median), "hit-median-ms")
	b.ReportMetric(ms(res.Hit.P99), "hit-p99-ms")
	b.ReportMetric(ms(res.Miss.Median), "miss-median-ms")
	b.ReportMetric(ms(res.Miss.P99), "miss-p99-ms")
	b.ReportMetric(float64(res.Miss.Median)/float64(max(res.Hit.Median, 1)), "miss/hit-median")
	b.ReportMetric(float64(res.Miss.P99)/float64(max(res.Hit.P99, 1)), "miss/hit-p99")
	if res.Misclassified > 0 {
		b.Logf("%d requests were not answered as intended (HIT/MISS) and are left out", res.Misclassified)
	}
}
