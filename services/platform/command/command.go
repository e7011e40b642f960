// Package command is the main of every Portico process: read the
// configuration once, log JSON to stdout at the configured level, run until
// SIGINT or SIGTERM, and exit non-zero when the configuration is invalid or
// the run fails.
package command

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/caarlos0/env/v11"

	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// Spec describes one process.
type Spec[C any] struct {
	// Name is the service name the logs carry.
	Name string
	// Load reads the configuration from environ (KEY=value entries).
	Load func(environ []string) (C, error)
	// LogLevel names the configured log level ("debug", "info", ...).
	LogLevel func(C) string
	// Run runs the process until ctx ends (a signal), then shuts it down.
	Run func(ctx context.Context, cfg C, log *slog.Logger) error
}

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1
	// ExitConfig is a configuration the process refused to start with
	// (sysexits' EX_CONFIG): restarting it will not help.
	ExitConfig = 78
)

// Main runs spec with this process's environment and exits with its code.
func Main[C any](spec Spec[C]) {
	os.Exit(Execute(context.Background(), spec, os.Environ(), os.Stdout))
}

// Execute runs spec until ctx ends or SIGINT or SIGTERM arrives, and returns
// the exit code.
func Execute[C any](ctx context.Context, spec Spec[C], environ []string, out io.Writer) int {
	cfg, err := spec.Load(environ)
	if err != nil {
		telemetry.NewLogger(out, slog.LevelInfo, spec.Name).Error("invalid configuration", "error", err.Error())
		return ExitConfig
	}
	log := telemetry.NewLogger(out, telemetry.ParseLevel(spec.LogLevel(cfg)), spec.Name)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := spec.Run(ctx, cfg, log); err != nil {
		log.Error(spec.Name+" stopped", "error", err.Error())
		return ExitFailed
	}
	return ExitOK
}

// ParseEnv reads a configuration struct from environ (KEY=value entries)
// by its env struct tags. defaults gives values for variables environ does
// not set: a process's own defaults for a setting its embedded shared
// configuration declares (each service's port in the local port plan for
// HTTP_ADDR, say), which a struct tag could not give per process.
func ParseEnv[C any](environ []string, defaults map[string]string) (C, error) {
	vars := env.ToMap(environ)
	for k, v := range defaults {
		if _, ok := vars[k]; !ok {
			vars[k] = v
		}
	}
	var cfg C
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		return cfg, err
	}
	return cfg, nil
}
