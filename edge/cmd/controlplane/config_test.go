package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/services/platform/command"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := loadConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listener != (ir.Listener{Address: "127.0.0.1", Port: 5000}) || cfg.rateLimit != nil {
		t.Errorf("defaults: listener %+v, rate limit %+v", cfg.listener, cfg.rateLimit)
	}
	cfg, err = loadConfig([]string{"INGRESS_LISTEN_ADDR=:8443", "RATELIMIT_ADDR=127.0.0.1:8081", "RATELIMIT_FAIL_OPEN=false"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listener != (ir.Listener{Address: "0.0.0.0", Port: 8443}) {
		t.Errorf("listener %+v", cfg.listener)
	}
	if want := (ir.RateLimitService{Address: "127.0.0.1", Port: 8081, Domain: "portico"}); cfg.rateLimit == nil || *cfg.rateLimit != want {
		t.Errorf("rate limit %+v, want %+v", cfg.rateLimit, want)
	}
	if cfg.TracingCollectorAddr != "" {
		t.Errorf("tracing collector %q by default, want none (no tracing)", cfg.TracingCollectorAddr)
	}
	cfg, err = loadConfig([]string{"TRACING_COLLECTOR_ADDR=jaeger:4317"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TracingCollectorAddr != "jaeger:4317" {
		t.Errorf("tracing collector %q", cfg.TracingCollectorAddr)
	}
}

// An invalid address is a configuration error: the process exits 78
// (EX_CONFIG) before it starts anything, naming the variable.
func TestInvalidAddressesExitConfig(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"INGRESS_LISTEN_ADDR=localhost", "INGRESS_LISTEN_ADDR"},
		{"INGRESS_LISTEN_ADDR=127.0.0.1:0", "INGRESS_LISTEN_ADDR"},
		{"INGRESS_LISTEN_ADDR=127.0.0.1:70000", "INGRESS_LISTEN_ADDR"},
		{"RATELIMIT_ADDR=ratelimit", "RATELIMIT_ADDR"},
		{"RATELIMIT_ADDR=127.0.0.1:http", "RATELIMIT_ADDR"},
		{"TRACING_COLLECTOR_ADDR=jaeger", "TRACING_COLLECTOR_ADDR"},
		{"TRACING_COLLECTOR_ADDR=:4317", "TRACING_COLLECTOR_ADDR"},
		{"SHUTDOWN_TIMEOUT=0s", "SHUTDOWN_TIMEOUT"},
	} {
		var out bytes.Buffer
		// Were the configuration accepted, Run would start a control
		// plane: the test would then fail on the exit code, not hang,
		// since its context is already over.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		code := command.Execute(ctx, spec(), []string{tc.env, "XDS_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0"}, &out)
		if code != command.ExitConfig {
			t.Errorf("%s: exit %d, want %d (EX_CONFIG)", tc.env, code, command.ExitConfig)
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: the log does not name %s: %s", tc.env, tc.want, out.String())
		}
	}
}
