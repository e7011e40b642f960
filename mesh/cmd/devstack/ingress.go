package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/portico-mesh/portico/envoy"
	"github.com/portico-mesh/portico/mesh/localenv"
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

func loopbackAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// edgeSpec is the caching and docs service: in the mesh like the others,
// calling users and products through its own sidecar.
func edgeSpec() serviceSpec {
	return serviceSpec{
		ID: "edge", Service: "edge", Binary: "edge", Addr: "127.0.0.1:8090",
		SidecarPort: 21090, AdminPort: 19090,
		Env: []string{
			"REDIS_URL=redis://" + loopbackAddr(redisPort) + "/0",
			fmt.Sprintf("EDGE_UPSTREAMS=users=%s,products=%s", loopbackAddr(edgeUsersUpstream), loopbackAddr(edgeProductsUpstream)),
		},
	}
}

// startEdge runs the edge service and its sidecar and waits until both
// pass their checks.
func (s *supervisor) startEdge(ctx context.Context) error {
	client, err := s.consul.Client()
	if err != nil {
		return err
	}
	spec := edgeSpec()
	if err := s.startInstance(ctx, client, spec); err != nil {
		return err
	}
	for _, id := range []string{spec.ID, spec.sidecarID()} {
		if err := waitPassing(ctx, client, id); err != nil {
			return err
		}
	}
	return nil
}

// startControlPlane runs Portico's xDS control plane and waits until it
// has built a configuration from the catalog.
func (s *supervisor) startControlPlane(ctx context.Context) error {
	admin := "http://" + loopbackAddr(controlPlaneAdmin)
	proc := &managedProcess{cmd: localenv.Command{
		Name: "controlplane", Path: filepath.Join(s.l.Bin, "controlplane"), Dir: s.l.Root,
		LogPath: s.l.logFile("controlplane"),
		Env: append(os.Environ(),
			"CONSUL_HTTP_ADDR="+s.consul.HTTPAddr(),
			"XDS_ADDR="+loopbackAddr(xdsPort),
			"ADMIN_ADDR="+loopbackAddr(controlPlaneAdmin),
			"INGRESS_LISTEN_ADDR="+loopbackAddr(ingressPort),
			"RATELIMIT_ADDR="+loopbackAddr(rateLimitGRPCPort),
		),
	}}
	if err := proc.Start(ctx); err != nil {
		return err
	}
	if err := waitHTTPReady(ctx, proc.Done(), proc.Err, admin+"/readyz"); err != nil {
		return fmt.Errorf("%w (log: %s)", err, rel(s.l, proc.cmd.LogPath))
	}
	stop := s.keep("controlplane", proc)
	s.track("controlplane", stop, componentState{
		Name: "controlplane", PID: proc.Pid(), URL: admin + "/model", Health: admin + "/readyz", Log: proc.cmd.LogPath,
	})
	return nil
}

// startRateLimit runs envoyproxy/ratelimit: counters in Redis, limits
// from the control plane.
func (s *supervisor) startRateLimit(ctx context.Context) error {
	rl, err := localenv.StartRateLimit(ctx, localenv.RateLimitOptions{
		Dir: s.l.Logs, RedisAddr: loopbackAddr(redisPort), XDSAddr: loopbackAddr(xdsPort),
		GRPCPort: rateLimitGRPCPort, HTTPPort: rateLimitHTTPPort, DebugPort: rateLimitDebugPort,
		MetricsPort: rateLimitMetrics,
	})
	if err != nil {
		return err
	}
	stop := s.keep("ratelimit", rl)
	health := "http://" + loopbackAddr(rateLimitHTTPPort) + "/healthcheck"
	s.track("ratelimit", stop, componentState{Name: "ratelimit", PID: rl.Pid(), URL: health, Health: health, Log: rl.LogPath()})
	return nil
}

// startIngress runs the ingress Envoy and returns once its configuration
// from the control plane is live.
func (s *supervisor) startIngress(ctx context.Context) error {
	e, err := localenv.StartEnvoy(ctx, localenv.EnvoyOptions{
		Name: "ingress", Dir: s.l.Logs, AdminPort: ingressAdminPort, WaitLive: true, LogLevel: "warn",
		Bootstrap: func(adminPort int) ([]byte, error) {
			return envoy.Ingress(envoy.IngressBootstrap{
				NodeID: "ingress-1", AdminPort: adminPort, XDSHost: "127.0.0.1", XDSPort: xdsPort,
				MetricsHost: "127.0.0.1", MetricsPort: ingressMetricsPort,
				OutlierLog: s.l.logFile("ingress-outlier"),
			})
		},
	})
	if err != nil {
		return err
	}
	stop := s.keep("ingress", e)
	s.track("ingress", stop, componentState{
		Name: "ingress", PID: e.Pid(), URL: "http://" + loopbackAddr(ingressPort),
		Health: "http://" + loopbackAddr(ingressPort) + "/healthz", Log: e.LogPath(),
	})
	return nil
}
