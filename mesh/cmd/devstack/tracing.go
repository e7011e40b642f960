package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// Jaeger's usual ports: OTLP in (gRPC, HTTP), the query API and its gRPC
// twin. OTLP/gRPC on 4317 is also where mesh/entries points the sidecars.
const (
	jaegerOTLPGRPCPort  = 4317
	jaegerOTLPHTTPPort  = 4318
	jaegerQueryPort     = 16686
	jaegerQueryGRPCPort = 16685
)

// envTracing set to "off" leaves the trace backend out: no process gets
// OTEL_* variables and the ingress has no tracer (the benchmark's
// baseline, mesh/cmd/bench -tracing off).
const envTracing = "PORTICO_TRACING"

// startJaeger runs the trace backend first, so that every process after
// it (services, edge, control plane) exports its spans there, the control
// plane points the ingress at it and the mesh entries the sidecars.
func (s *supervisor) startJaeger(ctx context.Context) error {
	if os.Getenv(envTracing) == "off" {
		s.log.Info("tracing off: no trace backend", "env", envTracing)
		return nil
	}
	j, err := s.stack.StartJaeger(ctx, localenv.JaegerOptions{
		Dir:          filepath.Join(s.l.Data, "jaeger"),
		OTLPGRPCPort: jaegerOTLPGRPCPort, OTLPHTTPPort: jaegerOTLPHTTPPort,
		QueryPort: jaegerQueryPort, QueryGRPCPort: jaegerQueryGRPCPort,
	})
	if err != nil {
		return err
	}
	s.keep("jaeger", j)
	services := j.QueryURL() + "/api/services"
	s.track(componentState{Name: "jaeger", PID: j.Pid(), URL: j.QueryURL() + "/api/traces?service=ingress", Health: services, Log: j.LogPath()})
	return nil
}
