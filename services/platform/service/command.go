package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portico-mesh/portico/services/platform/command"
	"github.com/portico-mesh/portico/services/platform/web"
)

// Config is a domain service's whole configuration: the base every service
// reads, and the service's own settings (Own), each from its env tags.
type Config[C any] struct {
	BaseConfig
	Own C
}

// Deps is what a domain service is built from. Everything is passed in,
// so a test builds the service without Consul, a broker or a process
// around it.
type Deps[C any] struct {
	// Pool is the service's database, migrated.
	Pool *pgxpool.Pool
	// Web is the process's HTTP configuration: logger, metrics registry,
	// tracing (outbox.NewWriter(Web.Tracing) stores events in the
	// request's trace) and readiness checks. Build sets Classify.
	Web web.Config
	// Config is the service's own configuration.
	Config C
}

// Settings is a service's own configuration: read from env tags, then
// checked as a whole.
type Settings interface{ Validate() error }

// Command is the whole command of a domain service: the service's name,
// its port in the local port plan, its migrations and its Build. Its main
// is one line, Command.Main, so every service starts, serves and stops
// the same way.
type Command[C Settings] struct {
	Name    string
	Version string
	// HTTPAddr is the default of HTTP_ADDR: the service's port in the
	// local port plan (BaseConfig's own default belongs to no service).
	HTTPAddr   string
	Migrations fs.FS
	Build      func(context.Context, Deps[C]) (*web.Server, error)
}

// Main runs the command with the process's environment and exits.
func (c Command[C]) Main() { command.Main(c.Spec()) }

// Spec is the command as package command runs it; tests call its Load and
// Run.
func (c Command[C]) Spec() command.Spec[Config[C]] {
	return command.Spec[Config[C]]{
		Name:     c.Name,
		Load:     c.load,
		Run:      c.run,
		LogLevel: func(cfg Config[C]) string { return cfg.LogLevel },
	}
}

func (c Command[C]) load(environ []string) (Config[C], error) {
	cfg, err := command.ParseEnv[Config[C]](environ, map[string]string{"HTTP_ADDR": c.HTTPAddr})
	if err != nil {
		return Config[C]{}, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Own.Validate(); err != nil {
		return Config[C]{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func (c Command[C]) run(ctx context.Context, cfg Config[C], log *slog.Logger) error {
	rt, err := Open(ctx, cfg.BaseConfig, c.Name, c.Version, c.Migrations, log)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	srv, err := c.Build(ctx, Deps[C]{Pool: rt.Pool, Web: rt.WebConfig(nil), Config: cfg.Own})
	if err != nil {
		return errors.Join(err, rt.Close(context.WithoutCancel(ctx)))
	}
	return rt.Run(ctx, srv)
}
