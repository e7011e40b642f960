package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/portico-mesh/portico/envoy"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// StartRateLimit runs envoyproxy/ratelimit (counters in Redis, limits
// from the control plane at opts.XDSAddr); an empty opts.Dir is
// Path("ratelimit").
func (s *Stack) StartRateLimit(ctx context.Context, opts localenv.RateLimitOptions) (*localenv.RateLimit, error) {
	if opts.Dir == "" {
		opts.Dir = s.Path("ratelimit")
	}
	rl, err := localenv.StartRateLimit(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	s.Started(rl.Pid())
	s.OnStop("ratelimit", func(ctx context.Context) error {
		// After its Redis went away and came back (an outage test),
		// envoyproxy/ratelimit no longer exits on SIGTERM; Stop then
		// kills it, and the leftover check after the stop still proves
		// it is gone. Its counters are disposable.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := rl.Stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	})
	return rl, nil
}

// IngressConfig configures StartIngress.
type IngressConfig struct {
	// NodeID names the Envoy to the control plane; empty means "ingress-1".
	NodeID string
	// Name labels its files (<Name>.log, <Name>-bootstrap.yaml); empty
	// means NodeID.
	Name string
	// XDSAddr is the control plane's ADS host:port. Required.
	XDSAddr string
	// AdminPort is Envoy's admin port; zero is chosen. MetricsPort, when
	// not zero, serves /stats/prometheus alone.
	AdminPort, MetricsPort int
	// Dir holds the bootstrap and the log; empty means Path("ingress").
	Dir string
	// OutlierLog, when set, receives outlier ejection events.
	OutlierLog string
	// LogLevel is Envoy's; empty means warn.
	LogLevel string
}

// StartIngress runs an ingress Envoy (envoy/ingress.yaml.tmpl) fed by
// the control plane, and returns once its configuration is live. The
// ingress is not registered in Consul: its identity is its leaf
// certificate for the service name "ingress", which intentions match.
func (s *Stack) StartIngress(ctx context.Context, cfg IngressConfig) (*localenv.Envoy, error) {
	if cfg.NodeID == "" {
		cfg.NodeID = "ingress-1"
	}
	if cfg.Name == "" {
		cfg.Name = cfg.NodeID
	}
	if cfg.Dir == "" {
		cfg.Dir = s.Path("ingress")
	}
	xdsHost, xdsPortText, err := net.SplitHostPort(cfg.XDSAddr)
	if err != nil {
		return nil, fmt.Errorf("ingress: xDS address: %w", err)
	}
	xdsPort, err := strconv.Atoi(xdsPortText)
	if err != nil {
		return nil, fmt.Errorf("ingress: xDS address: %w", err)
	}
	if cfg.OutlierLog != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.OutlierLog), 0o750); err != nil {
			return nil, err
		}
	}
	e, err := localenv.StartEnvoy(ctx, localenv.EnvoyOptions{
		Name: cfg.Name, Dir: cfg.Dir, AdminPort: cfg.AdminPort, WaitLive: true, LogLevel: cfg.LogLevel,
		Bootstrap: func(adminPort int) ([]byte, error) {
			return envoy.Ingress(envoy.IngressBootstrap{
				NodeID: cfg.NodeID, AdminPort: adminPort, XDSHost: xdsHost, XDSPort: xdsPort,
				MetricsPort: cfg.MetricsPort, OutlierLog: cfg.OutlierLog,
			})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("ingress %s: %w", cfg.NodeID, err)
	}
	s.Started(e.Pid())
	s.OnStop("ingress "+cfg.NodeID, e.Stop)
	return e, nil
}
