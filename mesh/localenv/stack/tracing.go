package stack

import (
	"context"
	"fmt"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// StartJaeger runs Jaeger as the stack's trace backend; an empty opts.Dir
// is Path("jaeger"). From then on the stack traces: every process it
// starts gets OTEL_EXPORTER_OTLP_ENDPOINT (services, edge, control plane),
// the control plane points the ingress at Jaeger's OTLP/gRPC listener, and
// StartServers points the sidecars there (proxy-defaults). Start it before
// the processes that should send to it.
func (s *Stack) StartJaeger(ctx context.Context, opts localenv.JaegerOptions) (*localenv.Jaeger, error) {
	if opts.Dir == "" {
		opts.Dir = s.Path("jaeger")
	}
	j, err := localenv.StartJaeger(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	s.Started(j.Pid())
	s.OnStop("jaeger", j.Stop)
	s.mu.Lock()
	s.jaeger = j
	s.mu.Unlock()
	return j, nil
}

// Jaeger is the stack's trace backend, or nil when it does not trace.
func (s *Stack) Jaeger() *localenv.Jaeger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jaeger
}

// tracingEnv is what a process needs to export its spans to the stack's
// Jaeger: the standard OTLP variables (OTLP/HTTP, the Go SDK's default)
// and a short batch delay, so a trace is complete within a second rather
// than the SDK's five. Nothing when the stack does not trace: the
// processes then make no spans at all.
func (s *Stack) tracingEnv() []string {
	j := s.Jaeger()
	if j == nil {
		return nil
	}
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + j.OTLPEndpoint(),
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=500",
	}
}

// tracingCollector is the OTLP/gRPC host:port of the stack's Jaeger, for
// Envoy (the ingress through the control plane, the sidecars through
// proxy-defaults); empty when the stack does not trace.
func (s *Stack) tracingCollector() string {
	if j := s.Jaeger(); j != nil {
		return j.OTLPGRPCAddr()
	}
	return ""
}
