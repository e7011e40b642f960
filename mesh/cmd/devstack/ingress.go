package main

import (
	"context"
	"path/filepath"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// The edge tier's fixed loopback ports. The ingress listens on 5000, the
// port of the seed's gateway, so its curl examples work as written.
const (
	ingressPort        = 5000
	ingressAdminPort   = 19000
	ingressMetricsPort = 19100
	xdsPort            = 18000
	controlPlaneAdmin  = 18001
	rateLimitGRPCPort  = 18081
	rateLimitHTTPPort  = 18082
	rateLimitDebugPort = 18083
	rateLimitMetrics   = 18084
	// The edge's sidecar listens for its upstreams here.
	edgeUsersUpstream    = 19201
	edgeProductsUpstream = 19202
)

// edgeSpec is the caching and docs service: in the mesh like the others,
// calling users and products through its own sidecar.
func edgeSpec() serviceSpec {
	return serviceSpec{ID: "edge", Service: "edge", Binary: "edge", Port: 8090, SidecarPort: 21090, AdminPort: 19090}
}

// startEdge runs the edge service and its sidecar and waits until both
// pass their checks and the edge reaches users and products.
func (s *supervisor) startEdge(ctx context.Context) error {
	spec := edgeSpec()
	edge, err := s.stack.StartEdge(ctx, stack.EdgeConfig{
		Instance: s.instanceConfig(spec), RedisAddr: localenv.Loopback(redisPort),
		UsersUpstreamPort: edgeUsersUpstream, ProductsUpstreamPort: edgeProductsUpstream,
	})
	if err != nil {
		return err
	}
	s.keepInstance(spec, edge.Instance)
	return nil
}

// startControlPlane runs Portico's xDS control plane and waits until it
// has built a configuration from the catalog.
func (s *supervisor) startControlPlane(ctx context.Context) error {
	cp, err := s.stack.StartControlPlane(ctx, stack.ControlPlaneConfig{
		Consul: s.consul, IngressPort: ingressPort, RateLimitPort: rateLimitGRPCPort,
		XDSPort: xdsPort, AdminPort: controlPlaneAdmin, LogPath: s.l.logFile("controlplane"),
	}, filepath.Join(s.l.Bin, "controlplane"))
	if err != nil {
		return err
	}
	s.keep("controlplane", cp.Process)
	admin := cp.Process.URL()
	s.track(componentState{
		Name: "controlplane", PID: cp.Process.Pid(), URL: admin + "/model", Health: admin + "/readyz", Log: cp.Process.LogPath(),
	})
	return nil
}

// startRateLimit runs envoyproxy/ratelimit: counters in Redis, limits
// from the control plane.
func (s *supervisor) startRateLimit(ctx context.Context) error {
	rl, err := s.stack.StartRateLimit(ctx, localenv.RateLimitOptions{
		Dir: s.l.Logs, RedisAddr: localenv.Loopback(redisPort), XDSAddr: localenv.Loopback(xdsPort),
		GRPCPort: rateLimitGRPCPort, HTTPPort: rateLimitHTTPPort, DebugPort: rateLimitDebugPort,
		MetricsPort: rateLimitMetrics,
	})
	if err != nil {
		return err
	}
	s.keep("ratelimit", rl)
	health := "http://" + localenv.Loopback(rateLimitHTTPPort) + "/healthcheck"
	s.track(componentState{Name: "ratelimit", PID: rl.Pid(), URL: health, Health: health, Log: rl.LogPath()})
	return nil
}

// startIngress runs the ingress Envoy and returns once its configuration
// from the control plane is live.
func (s *supervisor) startIngress(ctx context.Context) error {
	e, err := s.stack.StartIngress(ctx, stack.IngressConfig{
		NodeID: "ingress-1", Name: "ingress", Dir: s.l.Logs, XDSAddr: localenv.Loopback(xdsPort),
		AdminPort: ingressAdminPort, MetricsPort: ingressMetricsPort,
		OutlierLog: s.l.logFile("ingress-outlier"), LogLevel: "warn",
	})
	if err != nil {
		return err
	}
	s.keep("ingress", e)
	s.track(componentState{
		Name: "ingress", PID: e.Pid(), URL: "http://" + localenv.Loopback(ingressPort),
		Health: "http://" + localenv.Loopback(ingressPort) + "/healthz", Log: e.LogPath(),
	})
	return nil
}
