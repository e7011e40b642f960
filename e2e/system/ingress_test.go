package system_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/portico-mesh/portico/edge/controlplane"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/envoy"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// Where the control plane keeps the edge configuration in Consul KV (its
// command's defaults). Nothing is written there at start: the ingress
// serves the built-in default document.
const (
	edgeConfigKey       = "portico/edge/config"
	edgeConfigStatusKey = "portico/edge/config-status"
	ingressNodeID       = "ingress-1"
)

// startIngress runs the control plane in-process, the rate-limit service
// it configures, and one ingress Envoy, and returns once the ingress
// routes to every service. It comes after the services so that the
// ingress's first JWKS fetch through the mesh finds users.
//
// The ingress is not registered in Consul: its identity is its leaf
// certificate for the service name "ingress", which the agent issues
// without a registration, and intentions match that name.
func (s *system) startIngress(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	ingressPort, rateLimitPort := ports[0], ports[1]
	logFile, err := os.Create(s.path("logs", "controlplane.log"))
	if err != nil {
		return err
	}
	s.onStop("control plane log", func(context.Context) error { return logFile.Close() })
	// The control plane lives until the stop, not until the start's
	// deadline: New ties its xDS streams to the context it is given.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cp, err := controlplane.New(life, controlplane.Config{
		ConsulHTTPAddr:  s.consul.HTTPAddr(),
		XDSAddr:         "127.0.0.1:0",
		AdminAddr:       "127.0.0.1:0",
		Listener:        ir.Listener{Address: "127.0.0.1", Port: uint32(ingressPort)},
		IngressService:  "ingress",
		ConfigKey:       edgeConfigKey,
		StatusKey:       edgeConfigStatusKey,
		RateLimit:       &ir.RateLimitService{Address: "127.0.0.1", Port: uint32(rateLimitPort), Domain: "portico", FailOpen: true},
		ShutdownTimeout: 5 * time.Second,
	}, slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		cancel()
		return err
	}
	s.cp = cp
	done := make(chan error, 1)
	go func() { done <- cp.Run(life) }()
	s.onStop("control plane", func(ctx context.Context) error {
		cancel()
		select {
		case err := <-done:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case <-ctx.Done():
			dump, _ := os.Create(s.path("logs", "controlplane-goroutines.txt"))
			_ = pprof.Lookup("goroutine").WriteTo(dump, 2)
			_ = dump.Close()
			return ctx.Err()
		}
	})

	if s.rateLimit, err = localenv.StartRateLimit(ctx, localenv.RateLimitOptions{
		Dir: s.path("ratelimit"), RedisAddr: s.redis.Addr(), XDSAddr: cp.XDSAddr(), GRPCPort: rateLimitPort,
	}); err != nil {
		return err
	}
	rateLimit := s.rateLimit
	s.onStop("ratelimit", func(ctx context.Context) error {
		// After its Redis went away and came back (the outage test),
		// envoyproxy/ratelimit no longer exits on SIGTERM; Stop then
		// kills it, and the leftover check after the stop still proves
		// it is gone. Its counters are disposable.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := rateLimit.Stop(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintln(os.Stderr, "e2e/system: note: ratelimit ignored SIGTERM and was killed:", err)
			return nil
		}
		return err
	})

	xdsHost, xdsPortText, err := net.SplitHostPort(cp.XDSAddr())
	if err != nil {
		return err
	}
	xdsPort, err := strconv.Atoi(xdsPortText)
	if err != nil {
		return err
	}
	s.ingress, err = localenv.StartEnvoy(ctx, localenv.EnvoyOptions{
		Name: ingressNodeID, Dir: s.path("ingress"), WaitLive: true, LogLevel: "info",
		Bootstrap: func(adminPort int) ([]byte, error) {
			return envoy.Ingress(envoy.IngressBootstrap{NodeID: ingressNodeID, AdminPort: adminPort, XDSHost: xdsHost, XDSPort: xdsPort})
		},
	})
	if err != nil {
		return err
	}
	s.onStop("ingress", s.ingress.Stop)
	s.ingressURL = "http://" + loopback(ingressPort)

	// Public routes first (they do not count against the login limit):
	// the JWKS proves ingress -> users, the merged document proves
	// ingress -> edge and the edge's view of both services.
	if err := localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		return expectOK(ctx, s.ingressURL+"/api/users/.well-known/jwks.json", `"keys"`)
	}); err != nil {
		return fmt.Errorf("ingress -> users: %w", err)
	}
	return localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		if err := expectOK(ctx, s.ingressURL+"/openapi.json", ""); err != nil {
			return err
		}
		doc, err := s.fetch(ctx, "/openapi.json")
		if err != nil {
			return err
		}
		for _, path := range []string{`"/api/users/login"`, `"/api/products/products"`} {
			if !strings.Contains(string(doc), path) {
				return fmt.Errorf("merged document lacks %s", path)
			}
		}
		return nil
	})
}

// fetch GETs a path of the ingress and returns the body of a 200.
func (s *system) fetch(ctx context.Context, path string) ([]byte, error) {
	r, err := s.send(ctx, request{method: http.MethodGet, path: path})
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %.200s", path, r.status, r.body)
	}
	return r.body, nil
}
