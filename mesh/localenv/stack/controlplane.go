package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/portico-mesh/portico/edge/controlplane"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// Where the control plane keeps the edge configuration in Consul KV, as
// its command's defaults.
const (
	ConfigKey       = "portico/edge/config"
	ConfigStatusKey = "portico/edge/config-status"
)

// ControlPlaneConfig configures RunControlPlane and StartControlPlane.
type ControlPlaneConfig struct {
	// Consul is the agent whose catalog the control plane watches.
	// Required.
	Consul *localenv.Consul
	// IngressPort is the client listener it programs into the ingress,
	// RateLimitPort the rate-limit service's gRPC port it points the
	// ingress at, XDSPort and AdminPort its own listeners; zero ports
	// are chosen by the builder.
	IngressPort, RateLimitPort, XDSPort, AdminPort int
	// ConfigKey and StatusKey are its KV keys; empty means ConfigKey and
	// ConfigStatusKey.
	ConfigKey, StatusKey string
	// LogPath receives its log; empty means Path("logs", "controlplane.log").
	LogPath string
	// LogLevel is the in-process control plane's log level.
	LogLevel slog.Level
	// TracingCollector is the OTLP/gRPC host:port the ingress sends spans
	// to; empty means the stack's Jaeger, if it has one.
	TracingCollector string
}

func (s *Stack) controlPlaneDefaults(cfg *ControlPlaneConfig) error {
	if cfg.Consul == nil {
		return errors.New("control plane: Consul is required")
	}
	if cfg.ConfigKey == "" {
		cfg.ConfigKey = ConfigKey
	}
	if cfg.StatusKey == "" {
		cfg.StatusKey = ConfigStatusKey
	}
	if cfg.LogPath == "" {
		cfg.LogPath = s.Path("logs", "controlplane.log")
	}
	if err := os.MkdirAll(filepath.Dir(cfg.LogPath), 0o750); err != nil {
		return err
	}
	if cfg.TracingCollector == "" {
		cfg.TracingCollector = s.tracingCollector()
	}
	return localenv.FreePorts(&cfg.IngressPort, &cfg.RateLimitPort)
}

// ControlPlane is Portico's xDS control plane as the stack runs it.
type ControlPlane struct {
	cfg ControlPlaneConfig
	// InProcess is the control plane run by RunControlPlane; nil for
	// StartControlPlane's process.
	InProcess *controlplane.ControlPlane
	// Process is the command run by StartControlPlane; nil in process.
	Process *Instance
	xdsAddr string
}

// XDSAddr is its ADS host:port.
func (cp *ControlPlane) XDSAddr() string { return cp.xdsAddr }

// IngressPort is the ingress listener it programs.
func (cp *ControlPlane) IngressPort() int { return cp.cfg.IngressPort }

// IngressURL is the base URL of that listener.
func (cp *ControlPlane) IngressURL() string { return "http://" + localenv.Loopback(cp.cfg.IngressPort) }

// RateLimitPort is the rate-limit gRPC port it points the ingress at.
func (cp *ControlPlane) RateLimitPort() int { return cp.cfg.RateLimitPort }

func (cfg ControlPlaneConfig) rateLimit() *ir.RateLimitService {
	return &ir.RateLimitService{Address: "127.0.0.1", Port: uint32(cfg.RateLimitPort), Domain: "portico", FailOpen: true}
}

// RunControlPlane runs the control plane in this process (tests read its
// xDS server: versions and ACKs) until Stop.
func (s *Stack) RunControlPlane(ctx context.Context, cfg ControlPlaneConfig) (*ControlPlane, error) {
	if err := s.controlPlaneDefaults(&cfg); err != nil {
		return nil, err
	}
	listen := func(port int) string {
		if port == 0 {
			return "127.0.0.1:0"
		}
		return localenv.Loopback(port)
	}
	logFile, err := os.Create(cfg.LogPath)
	if err != nil {
		return nil, err
	}
	s.OnStop("control plane log", func(context.Context) error { return logFile.Close() })
	// The control plane lives until the stop, not until the start's
	// deadline: New ties its xDS streams to the context it is given.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cp, err := controlplane.New(life, controlplane.Config{
		ConsulHTTPAddr:   cfg.Consul.HTTPAddr(),
		XDSAddr:          listen(cfg.XDSPort),
		AdminAddr:        listen(cfg.AdminPort),
		Listener:         ir.Listener{Address: "127.0.0.1", Port: uint32(cfg.IngressPort)},
		IngressService:   "ingress",
		ConfigKey:        cfg.ConfigKey,
		StatusKey:        cfg.StatusKey,
		RateLimit:        cfg.rateLimit(),
		TracingCollector: cfg.TracingCollector,
		ShutdownTimeout:  5 * time.Second,
	}, slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: cfg.LogLevel})))
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cp.Run(life) }()
	s.OnStop("control plane", func(ctx context.Context) error {
		cancel()
		select {
		case err := <-done:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	return &ControlPlane{cfg: cfg, InProcess: cp, xdsAddr: cp.XDSAddr()}, nil
}

// StartControlPlane runs the control plane command binary and returns
// once it has built a configuration from the catalog (/readyz).
func (s *Stack) StartControlPlane(ctx context.Context, cfg ControlPlaneConfig, binary string) (*ControlPlane, error) {
	if err := s.controlPlaneDefaults(&cfg); err != nil {
		return nil, err
	}
	if err := localenv.FreePorts(&cfg.XDSPort, &cfg.AdminPort, &cfg.IngressPort, &cfg.RateLimitPort); err != nil {
		return nil, err
	}
	inst := &Instance{
		cfg: InstanceConfig{ID: "controlplane", Binary: binary, Consul: cfg.Consul, Port: cfg.AdminPort, LogPath: cfg.LogPath},
		cmd: localenv.Command{
			Name: "controlplane", Path: binary, Dir: s.cfg.Root, LogPath: cfg.LogPath,
			Env: s.environ(
				"CONSUL_HTTP_ADDR="+cfg.Consul.HTTPAddr(),
				"XDS_ADDR="+localenv.Loopback(cfg.XDSPort),
				"ADMIN_ADDR="+localenv.Loopback(cfg.AdminPort),
				"INGRESS_LISTEN_ADDR="+localenv.Loopback(cfg.IngressPort),
				"RATELIMIT_ADDR="+localenv.Loopback(cfg.RateLimitPort),
				"EDGE_CONFIG_KEY="+cfg.ConfigKey,
				"EDGE_CONFIG_STATUS_KEY="+cfg.StatusKey,
				"TRACING_COLLECTOR_ADDR="+cfg.TracingCollector,
			),
		},
		stack: s,
	}
	inst.ready = func(ctx context.Context) error { return ExpectOK(ctx, inst.URL()+"/readyz", "") }
	if err := inst.Start(ctx); err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	s.OnStop("controlplane", func(ctx context.Context) error { return inst.Process().Stop(ctx) })
	return &ControlPlane{cfg: cfg, Process: inst, xdsAddr: localenv.Loopback(cfg.XDSPort)}, nil
}
