package stack

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/portico-mesh/portico/mesh/localenv"
)

func TestStopUndoesStepsInReverseOrder(t *testing.T) {
	s, err := New(Config{Root: ".", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, name := range []string{"servers", "services", "ingress"} {
		s.OnStop(name, func(context.Context) error {
			order = append(order, name)
			if name == "services" {
				return errors.New("boom")
			}
			return nil
		})
	}
	err = s.Stop(t.Context())
	if want := []string{"ingress", "services", "servers"}; !slices.Equal(order, want) {
		t.Errorf("stopped %v, want %v", order, want)
	}
	if err == nil || !strings.Contains(err.Error(), "stop services: boom") {
		t.Errorf("Stop error %v, want the failing step named", err)
	}
	// Every step ran once: a second Stop has nothing left to do.
	order = nil
	if err := s.Stop(t.Context()); err != nil || len(order) != 0 {
		t.Errorf("second Stop: %v, ran %v", err, order)
	}
}

func TestStopReportsAProcessLeftRunning(t *testing.T) {
	s, err := New(Config{Root: ".", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s.Started(cmd.Process.Pid)
	if err := s.Stop(t.Context()); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("Stop with a process left: %v, want it reported", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop once the process is gone: %v", err)
	}
}

// TestJaegerMakesTheStackTrace: before StartJaeger no process gets OTEL_*
// variables and the control plane no collector; after it every process
// exports to Jaeger, the control plane points the ingress at its OTLP/gRPC
// listener and the mesh entries are applied with it.
func TestJaegerMakesTheStackTrace(t *testing.T) {
	s, err := New(Config{Root: ".", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if env := strings.Join(s.environ(), " "); strings.Contains(env, "OTEL_") || s.tracingCollector() != "" || len(s.MeshEntryOptions()) != 0 {
		t.Fatalf("a stack without Jaeger traces: env %q, collector %q", env, s.tracingCollector())
	}
	j, err := s.StartJaeger(t.Context(), localenv.JaegerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := s.environ("EXTRA=1")
	if !slices.Contains(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+j.OTLPEndpoint()) || env[len(env)-1] != "EXTRA=1" {
		t.Errorf("environ %q: want Jaeger's OTLP endpoint, then the caller's variables", env)
	}
	if s.tracingCollector() != j.OTLPGRPCAddr() || len(s.MeshEntryOptions()) != 1 {
		t.Errorf("collector %q, want %q; %d mesh entry options", s.tracingCollector(), j.OTLPGRPCAddr(), len(s.MeshEntryOptions()))
	}
	cfg := ControlPlaneConfig{Consul: &localenv.Consul{}}
	if err := s.controlPlaneDefaults(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.TracingCollector != j.OTLPGRPCAddr() {
		t.Errorf("control plane collector %q, want %q", cfg.TracingCollector, j.OTLPGRPCAddr())
	}
}
