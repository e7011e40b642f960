package localenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// RateLimitNodeID is the xDS node id the rate-limit service uses; the
// control plane serves its configuration to this id.
const RateLimitNodeID = "ratelimit"

// RateLimitOptions configures StartRateLimit.
type RateLimitOptions struct {
	// Dir holds the log. Required.
	Dir string
	// RedisAddr is the Redis host:port that keeps the counters. Required.
	RedisAddr string
	// XDSAddr is the control plane's ADS host:port, which serves the
	// limits. Required.
	XDSAddr string
	// GRPCPort serves Envoy's rate-limit checks; 0 picks a free port, as
	// for HTTPPort (health), DebugPort and MetricsPort (Prometheus /metrics).
	GRPCPort, HTTPPort, DebugPort, MetricsPort int
}

// RateLimit is the envoyproxy/ratelimit service. Stop and Start restart
// it on the same ports.
type RateLimit struct {
	opts RateLimitOptions
	bin  string

	restartable
}

// StartRateLimit starts the service and returns once its health check
// passes.
func StartRateLimit(ctx context.Context, opts RateLimitOptions) (*RateLimit, error) {
	if opts.Dir == "" || opts.RedisAddr == "" || opts.XDSAddr == "" {
		return nil, errors.New("start ratelimit: Dir, RedisAddr and XDSAddr are required")
	}
	bin, err := Binary("ratelimit")
	if err != nil {
		return nil, fmt.Errorf("start ratelimit: %w", err)
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, fmt.Errorf("start ratelimit: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("start ratelimit: %w", err)
	}
	if err := FreePorts(&opts.GRPCPort, &opts.HTTPPort, &opts.DebugPort, &opts.MetricsPort); err != nil {
		return nil, fmt.Errorf("start ratelimit: %w", err)
	}
	r := &RateLimit{opts: opts, bin: bin}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// GRPCAddr is where Envoy sends rate-limit checks.
func (r *RateLimit) GRPCAddr() string { return Loopback(r.opts.GRPCPort) }

// GRPCPort is the port of GRPCAddr.
func (r *RateLimit) GRPCPort() int { return r.opts.GRPCPort }

// LogPath is the file that receives the service's output.
func (r *RateLimit) LogPath() string { return filepath.Join(r.opts.Dir, "ratelimit.log") }

// Env is the service's environment: counters in Redis, limits from xDS,
// every listener on loopback, no statsd.
func (r *RateLimit) Env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOST=127.0.0.1", "PORT=" + strconv.Itoa(r.opts.HTTPPort),
		"GRPC_HOST=127.0.0.1", "GRPC_PORT=" + strconv.Itoa(r.opts.GRPCPort),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + strconv.Itoa(r.opts.DebugPort),
		"USE_STATSD=false",
		"USE_PROMETHEUS=true", "PROMETHEUS_ADDR=" + Loopback(r.opts.MetricsPort),
		"LOG_LEVEL=warn", "LOG_FORMAT=json",
		"BACKEND_TYPE=redis", "REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + r.opts.RedisAddr,
		"CONFIG_TYPE=GRPC_XDS_SOTW",
		"CONFIG_GRPC_XDS_NODE_ID=" + RateLimitNodeID,
		"CONFIG_GRPC_XDS_SERVER_URL=" + r.opts.XDSAddr,
		"CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL=500ms",
		"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL=500ms",
		"XDS_CLIENT_BACKOFF_MAX_INTERVAL=5s",
	}
}

// Start starts the service after Stop; it does nothing while it runs.
func (r *RateLimit) Start(ctx context.Context) error {
	health := "http://" + Loopback(r.opts.HTTPPort) + "/healthcheck"
	return r.startOnce(ctx, func(ctx context.Context) (*Process, error) {
		return launchReady(ctx, Command{
			Name: "ratelimit", Path: r.bin, Env: r.Env(), Dir: r.opts.Dir, LogPath: r.LogPath(),
		}, func(ctx context.Context) error { return adminAnswers(ctx, health) })
	})
}

// MetricsAddr is the host:port of its Prometheus /metrics.
func (r *RateLimit) MetricsAddr() string { return Loopback(r.opts.MetricsPort) }
