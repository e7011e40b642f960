package process_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/services/platform/process"
)

func TestProfilingEndpointServesWhileTheProcessRuns(t *testing.T) {
	var port int
	if err := localenv.FreePorts(&port); err != nil {
		t.Fatal(err)
	}
	addr := localenv.Loopback(port)
	p, err := process.Open(t.Context(), process.Config{Name: "debugged", DebugAddr: addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Wait(ctx) }()

	url := "http://" + addr + "/debug/pprof/goroutine?debug=1"
	waitFor(t, "the profiling endpoint", func(ctx context.Context) error {
		body, err := get(ctx, url)
		if err != nil {
			return err
		}
		if !strings.Contains(body, "goroutine profile:") {
			t.Fatalf("GET %s: %.200s", url, body)
		}
		return nil
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := get(t.Context(), url); err == nil {
		t.Fatal("the profiling endpoint still answers after shutdown")
	}
}

func TestProfilingEndpointOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "10.1.2.3:6060", "example.com:6060", "6060"} {
		if _, err := process.Open(t.Context(), process.Config{Name: "debugged", DebugAddr: addr}); err == nil || !strings.Contains(err.Error(), "DEBUG_ADDR") {
			t.Errorf("DebugAddr %q: err = %v, want a DEBUG_ADDR refusal", addr, err)
		}
	}
}

func TestProcessClosedWithoutServingReleasesTheProfilingPort(t *testing.T) {
	var port int
	if err := localenv.FreePorts(&port); err != nil {
		t.Fatal(err)
	}
	cfg := process.Config{Name: "debugged", DebugAddr: localenv.Loopback(port)}
	p, err := process.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	again, err := process.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("the port is still taken after Close: %v", err)
	}
	if err := again.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
