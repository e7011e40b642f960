package ingress_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/edge/controlplane/xdsserver"
	"github.com/portico-mesh/portico/services/users/token"
)

var benchSubject = token.Subject{ID: "bench", Username: "bench", Email: "bench@example.com", Roles: []string{"user"}}

// BenchmarkXDSPropagation measures, over many catalog changes (an
// instance turning healthy), the time until the ingress Envoy acknowledged
// the new configuration and until the new instance served its first
// request. It prints the median and p99 of each (make bench-xds).
//
// PORTICO_BENCH_CHANGES sets the number of changes (default 50).
func BenchmarkXDSPropagation(b *testing.B) {
	changes := 50
	if v, err := strconv.Atoi(os.Getenv("PORTICO_BENCH_CHANGES")); err == nil && v > 0 {
		changes = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	stable, err := newUpstream(ctx, "products", "products-bench-stable")
	if err != nil {
		b.Fatal(err)
	}
	defer stable.Close(context.Background())
	fresh, err := newUpstream(ctx, "products", "products-bench-fresh")
	if err != nil {
		b.Fatal(err)
	}
	defer fresh.Close(context.Background())
	tok, _, err := env.issuer.Issue(benchSubject)
	if err != nil {
		b.Fatal(err)
	}

	// A client keeps requests flowing, as production traffic would.
	var wg sync.WaitGroup
	loadCtx, stopLoad := context.WithCancel(ctx)
	wg.Go(func() {
		client := &http.Client{Timeout: 5 * time.Second}
		for loadCtx.Err() == nil {
			req, _ := http.NewRequestWithContext(loadCtx, http.MethodGet, env.ingressURL+"/api/products/products", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if resp, err := client.Do(req); err == nil {
				_ = resp.Body.Close()
			}
		}
	})
	defer func() { stopLoad(); wg.Wait() }()

	settle := func(status string) {
		before := env.cp.Server().Version(xdsserver.IngressGroup)
		fresh.setHealth(b, status)
		for env.cp.Server().Version(xdsserver.IngressGroup) == before {
			time.Sleep(5 * time.Millisecond)
		}
		if err := waitIngressAcked(ctx); err != nil {
			b.Fatal(err)
		}
	}
	settle(api.HealthCritical)

	var acked, served []time.Duration
	b.ResetTimer()
	for range changes {
		before := env.cp.Server().Version(xdsserver.IngressGroup)
		seen := fresh.requests.Load()
		start := time.Now()
		fresh.setHealth(b, api.HealthPassing)
		for env.cp.Server().Version(xdsserver.IngressGroup) == before {
			time.Sleep(time.Millisecond)
		}
		version := env.cp.Server().Version(xdsserver.IngressGroup)
		if err := env.cp.Server().WaitAcked(ctx, "ingress-1", version); err != nil {
			b.Fatal(err)
		}
		acked = append(acked, time.Since(start))
		for fresh.requests.Load() == seen {
			time.Sleep(time.Millisecond)
		}
		served = append(served, time.Since(start))
		settle(api.HealthCritical)
	}
	b.StopTimer()
	report := func(name, unit string, d []time.Duration) {
		slices.Sort(d)
		median := d[len(d)/2]
		// The nearest-rank p99: with fewer than 100 changes, the maximum.
		p99 := d[min(len(d)-1, (len(d)*99+99)/100-1)]
		b.ReportMetric(float64(median.Microseconds())/1000, unit+"-median-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, unit+"-p99-ms")
		b.Logf("%-34s median %7.1f ms   p99 %7.1f ms   (%d changes)", name, ms(median), ms(p99), len(d))
	}
	report("catalog change -> Envoy ACK", "ack", acked)
	report("catalog change -> first request", "served", served)
	b.Logf("ratio first request / ACK (medians): %.2f", ms(served[len(served)/2])/ms(acked[len(acked)/2]))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
