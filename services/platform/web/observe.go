package web

import (
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"log/slog"

	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// HeaderRequestID is the request id header. Envoy generates it at the
// ingress and propagates it, so one id follows a request through the mesh.
const HeaderRequestID = "X-Request-Id"

const (
	localRequestID = "portico.request_id"
	localRoute     = "portico.route"
	unmatchedRoute = "unmatched"
)

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests served, by method, route template and status code.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by method, route template and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route", "status"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "http_requests_in_flight",
			Help: "HTTP requests being served now, by method and route template.",
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight)
	return m
}

// track runs first in a route's own chain, where the template is known
// before the handler runs.
func (m *httpMetrics) track(method, route string) fiber.Handler {
	gauge := m.inFlight.WithLabelValues(method, route)
	return func(c *fiber.Ctx) error {
		c.Locals(localRoute, route)
		gauge.Inc()
		defer gauge.Dec()
		return c.Next()
	}
}

func requestID() fiber.Handler {
	return func(c *fiber.Ctx) error {
		id := c.Get(HeaderRequestID)
		if id == "" || len(id) > 128 {
			id = uuid.NewString()
		}
		c.Locals(localRequestID, id)
		c.Set(HeaderRequestID, id)
		return c.Next()
	}
}

func requestIDOf(c *fiber.Ctx) string {
	id, _ := c.Locals(localRequestID).(string)
	return id
}

// isOperational marks the endpoints that probes and scrapers hit every few
// seconds; they are neither traced nor logged.
func isOperational(c *fiber.Ctx) bool {
	switch c.Path() {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

// observe records the request count, latency (with the trace id as an
// exemplar when the request is sampled) and access log, whose line carries
// the request's trace_id and span_id when it has a trace. Errors are
// rendered here, through the same error handler the app uses, so the
// status is final when it is recorded.
func observe(log *slog.Logger, m *httpMetrics, errorHandler fiber.ErrorHandler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		if err := c.Next(); err != nil {
			if herr := errorHandler(c, err); herr != nil {
				return herr
			}
		}
		elapsed := time.Since(start)
		route, _ := c.Locals(localRoute).(string)
		if route == "" {
			route = unmatchedRoute
		}
		method := c.Method()
		status := c.Response().StatusCode()
		code := strconv.Itoa(status)
		m.requests.WithLabelValues(method, route, code).Inc()
		telemetry.Observe(c.UserContext(), m.duration.WithLabelValues(method, route, code), elapsed.Seconds())
		if !isOperational(c) {
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			log.Log(c.UserContext(), level, "request",
				"method", method,
				"path", c.Path(),
				"route", route,
				"status", status,
				"duration_ms", float64(elapsed.Microseconds())/1000,
				"bytes", len(c.Response().Body()),
				"user_agent", strings.Clone(c.Get(fiber.HeaderUserAgent)),
			)
		}
		return nil
	}
}
