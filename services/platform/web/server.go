// Package web is the HTTP plumbing every Portico service shares: a Fiber app
// with one error handler, request ids, access logs, tracing, Prometheus
// metrics, health endpoints and graceful shutdown. Services only add routes.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// Config describes one service's HTTP surface.
type Config struct {
	// Service names the service in logs, metrics and spans.
	Service string
	Log     *slog.Logger
	// Registry receives the HTTP metrics; /metrics serves it.
	Registry *prometheus.Registry
	Tracing  telemetry.Tracing
	// Classify turns a business error into the problem clients see; nil
	// for errors it does not know, which become an opaque 500.
	Classify func(error) *problem.Problem
	// Checks are run by /readyz.
	Checks []Check

	ReadTimeout  time.Duration // default 10s
	WriteTimeout time.Duration // default 30s
	IdleTimeout  time.Duration // default 120s
	BodyLimit    int           // bytes, default contract.MaxRequestBody
}

func (c *Config) defaults() {
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = contract.MaxRequestBody
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Route is one operation of a service. Path uses Fiber's syntax
// (/users/:id) and is also the route template in metrics.
type Route struct {
	Method  string
	Path    string
	Handler fiber.Handler
}

// Server is a service's HTTP server.
type Server struct {
	cfg     Config
	app     *fiber.App
	metrics *httpMetrics
}

// New builds the app with the shared middleware and the operational
// endpoints (/healthz, /readyz, /metrics) mounted.
func New(cfg Config) *Server {
	cfg.defaults()
	s := &Server{cfg: cfg, metrics: newHTTPMetrics(cfg.Registry)}
	errorHandler := newErrorHandler(cfg.Log, cfg.Classify)
	s.app = fiber.New(fiber.Config{
		AppName:               cfg.Service,
		ErrorHandler:          errorHandler,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		BodyLimit:             cfg.BodyLimit,
		DisableStartupMessage: true,
		// Fiber reuses request buffers; Immutable copies every string it
		// hands out so values may outlive the handler (events, goroutines).
		Immutable: true,
	})
	s.app.Use(
		requestID(),
		traceContext(cfg.Tracing),
		// Tracing has put the span into the user context; carry the request
		// id there too so business code logs with both.
		func(c *fiber.Ctx) error {
			c.SetUserContext(telemetry.WithRequestID(c.UserContext(), requestIDOf(c)))
			return c.Next()
		},
		observe(cfg.Log, s.metrics, errorHandler),
		// Inside observe, so a panic is still counted and logged as a 500.
		recoverPanics(cfg.Log),
	)
	mountOperational(s.app, cfg.Registry, cfg.Checks)
	return s
}

// spanName names a server span "<method> <route template>" (POST
// /products/:id), as OpenTelemetry's HTTP conventions do.
func spanName(c *fiber.Ctx) string {
	return c.Method() + " " + c.Route().Path
}

// Mount adds the service's routes. Each handler is wrapped so that the
// in-flight gauge knows the route template before the handler runs.
func (s *Server) Mount(routes ...Route) {
	for _, r := range routes {
		s.app.Add(r.Method, r.Path, s.metrics.track(r.Method, r.Path), r.Handler)
	}
}

// App exposes the Fiber app, for tests that call it in-process.
func (s *Server) App() *fiber.App { return s.app }

// Serve accepts connections on ln until ctx is done, then stops accepting
// and gives in-flight requests up to grace to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	errs := make(chan error, 1)
	go func() { errs <- s.app.Listener(ln) }()
	select {
	case err := <-errs:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	s.cfg.Log.Info("http server shutting down", "grace", grace.String())
	shutdownErr := s.app.ShutdownWithTimeout(grace)
	// Shutdown closes only the listeners the server has begun serving: if
	// ctx ended before the serving goroutine got that far (a loop of the
	// process failed at once, say), the server would start afterwards and
	// never return. Closing ln makes it return either way; requests in
	// flight were already finished by Shutdown.
	_ = ln.Close()
	if shutdownErr != nil {
		return fmt.Errorf("http shutdown: %w", shutdownErr)
	}
	if err := <-errs; err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}
