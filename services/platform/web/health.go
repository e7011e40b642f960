package web

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness probe of a dependency.
type Check struct {
	Name string
	// Critical checks make /readyz fail. A non-critical one only marks the
	// service degraded: the outbox keeps writes working while the broker is
	// away, so the service must stay in the catalog.
	Critical bool
	Probe    func(ctx context.Context) error
}

// CheckTimeout bounds each readiness probe.
const CheckTimeout = 2 * time.Second

type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

func mountOperational(app *fiber.App, reg *prometheus.Registry, checks []Check) {
	app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	app.Get("/readyz", func(c *fiber.Ctx) error {
		r := probe(c.UserContext(), checks)
		if r.Status == "unavailable" {
			c.Status(http.StatusServiceUnavailable)
		}
		return c.JSON(r)
	})
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg,
		// OpenMetrics, when the scraper asks for it, is the format that
		// carries the latency histograms' exemplars (trace ids).
		EnableOpenMetrics: true,
	})))
}

func probe(ctx context.Context, checks []Check) readiness {
	type result struct {
		name     string
		critical bool
		err      error
	}
	results := make([]result, len(checks))
	var wg sync.WaitGroup
	for i, chk := range checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
			defer cancel()
			results[i] = result{name: chk.Name, critical: chk.Critical, err: chk.Probe(ctx)}
		})
	}
	wg.Wait()
	r := readiness{Status: "ready", Checks: make(map[string]string, len(checks))}
	for _, res := range results {
		if res.err == nil {
			r.Checks[res.name] = "ok"
			continue
		}
		r.Checks[res.name] = "failing: " + res.err.Error()
		switch {
		case res.critical:
			r.Status = "unavailable"
		case r.Status == "ready":
			r.Status = "degraded"
		}
	}
	return r
}
