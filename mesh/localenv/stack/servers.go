package stack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/portico-mesh/portico/mesh/entries"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// ServerPorts is where the servers listen; a zero port is chosen by the
// server's start (Consul's other ports are always private).
type ServerPorts struct {
	Postgres, Redis, RabbitMQ, RabbitMQManagement, ConsulHTTP int
	// Jaeger's listeners, when ServersConfig.Tracing starts it.
	JaegerOTLPGRPC, JaegerOTLPHTTP, JaegerQuery, JaegerQueryGRPC int
}

// ServersConfig configures StartServers.
type ServersConfig struct {
	Ports ServerPorts
	// ConsulNode names the agent's node; empty derives one from its port.
	ConsulNode string
	// PersistentConsul runs Consul as a server that keeps its state in
	// its directory (localenv.ConsulOptions.Persistent), so that a
	// restart of the agent keeps the catalog, KV, config entries and the
	// Connect CA. Its start takes about 1.5 s more than a -dev agent's
	// (the first raft election), so only a suite that restarts Consul
	// asks for it.
	PersistentConsul bool
	// Databases are created in PostgreSQL (if missing): one per service.
	Databases []string
	// Build, when set, runs while the servers start (they mostly wait):
	// typically Build of the commands the services need.
	Build func(context.Context) error
	// Tracing starts Jaeger too (see StartJaeger) and points the
	// sidecars' tracer at it.
	Tracing bool
}

// Servers are the shared servers of a stack.
type Servers struct {
	Postgres  *localenv.Postgres
	Redis     *localenv.Redis
	RabbitMQ  *localenv.RabbitMQ
	Consul    *localenv.Consul
	ConsulAPI *api.Client
	// Jaeger is the trace backend; nil unless ServersConfig.Tracing.
	Jaeger *localenv.Jaeger
}

// DatabaseURL is the URL of one database of Postgres.
func (sv *Servers) DatabaseURL(name string) string { return sv.Postgres.URL(name) }

// StartServers starts PostgreSQL, Redis, RabbitMQ and Consul together,
// applies mesh/entries (intentions deny by default, so no request passes
// without its intention) and creates the databases.
func (s *Stack) StartServers(ctx context.Context, cfg ServersConfig) (*Servers, error) {
	sv := &Servers{}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	if cfg.Build != nil {
		wg.Go(func() { errs[0] = cfg.Build(ctx) })
	}
	wg.Go(func() {
		sv.Postgres, errs[1] = s.StartPostgres(ctx, localenv.PostgresOptions{Port: cfg.Ports.Postgres})
	})
	wg.Go(func() {
		sv.Redis, errs[2] = s.StartRedis(ctx, localenv.RedisOptions{Port: cfg.Ports.Redis})
	})
	wg.Go(func() {
		sv.RabbitMQ, errs[3] = s.StartRabbitMQ(ctx, localenv.RabbitMQOptions{
			Port: cfg.Ports.RabbitMQ, ManagementPort: cfg.Ports.RabbitMQManagement,
		})
	})
	wg.Go(func() {
		sv.Consul, errs[4] = s.StartConsul(ctx, localenv.ConsulOptions{
			HTTPPort: cfg.Ports.ConsulHTTP, Node: cfg.ConsulNode, Persistent: cfg.PersistentConsul,
		})
	})
	if cfg.Tracing {
		wg.Go(func() {
			sv.Jaeger, errs[5] = s.StartJaeger(ctx, localenv.JaegerOptions{
				OTLPGRPCPort: cfg.Ports.JaegerOTLPGRPC, OTLPHTTPPort: cfg.Ports.JaegerOTLPHTTP,
				QueryPort: cfg.Ports.JaegerQuery, QueryGRPCPort: cfg.Ports.JaegerQueryGRPC,
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return sv, err
	}
	var err error
	if sv.ConsulAPI, err = sv.Consul.Client(); err != nil {
		return sv, err
	}
	if err := entries.Apply(ctx, sv.ConsulAPI, s.entryOptions()...); err != nil {
		return sv, fmt.Errorf("mesh entries: %w", err)
	}
	for _, db := range cfg.Databases {
		if _, err := CreateDatabase(ctx, sv.Postgres.URL("postgres"), db); err != nil {
			return sv, err
		}
	}
	return sv, nil
}

// StartPostgres starts PostgreSQL; an empty opts.Dir is Path("postgres").
func (s *Stack) StartPostgres(ctx context.Context, opts localenv.PostgresOptions) (*localenv.Postgres, error) {
	if opts.Dir == "" {
		opts.Dir = s.Path("postgres")
	}
	pg, err := localenv.StartPostgres(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s.OnStop("postgres", pg.Stop)
	return pg, nil
}

// StartRedis starts Redis; an empty opts.Dir is Path("redis").
func (s *Stack) StartRedis(ctx context.Context, opts localenv.RedisOptions) (*localenv.Redis, error) {
	if opts.Dir == "" {
		opts.Dir = s.Path("redis")
	}
	r, err := localenv.StartRedis(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	s.Started(r.Pid())
	// Stop the current run: a test may restart Redis (an outage).
	s.OnStop("redis", r.Stop)
	return r, nil
}

// StartRabbitMQ starts RabbitMQ; an empty opts.Dir is Path("rabbitmq").
func (s *Stack) StartRabbitMQ(ctx context.Context, opts localenv.RabbitMQOptions) (*localenv.RabbitMQ, error) {
	if opts.Dir == "" {
		opts.Dir = s.Path("rabbitmq")
	}
	r, err := localenv.StartRabbitMQ(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", err)
	}
	s.OnStop("rabbitmq", r.Close)
	return r, nil
}

// StartConsul starts a single-server agent (Connect with its built-in CA;
// state in memory unless opts.Persistent); an empty opts.Dir is
// Path("consul"). It applies nothing: see ApplyMeshEntries.
func (s *Stack) StartConsul(ctx context.Context, opts localenv.ConsulOptions) (*localenv.Consul, error) {
	if opts.Dir == "" {
		opts.Dir = s.Path("consul")
	}
	c, err := localenv.StartConsul(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	s.Started(c.Pid())
	s.OnStop("consul", c.Stop)
	return c, nil
}

// CreateDatabase creates database name, unless it exists, with the
// superuser adminURL, and returns its URL.
func CreateDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DropDatabase drops database name, closing its connections.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// ApplyMeshEntries writes mesh/entries (defaults, resolvers, intentions
// with default deny) to the agent c; opts adapt them (see
// entries.TracingCollector).
func ApplyMeshEntries(ctx context.Context, c *localenv.Consul, opts ...entries.Option) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	return entries.Apply(ctx, client, opts...)
}

// entryOptions adapt mesh/entries to the stack: the sidecars trace into
// its Jaeger when it has one.
func (s *Stack) entryOptions() []entries.Option {
	if c := s.tracingCollector(); c != "" {
		return []entries.Option{entries.TracingCollector(c)}
	}
	return nil
}

// MeshEntryOptions are the options ApplyMeshEntries needs to apply
// mesh/entries as StartServers does for this stack.
func (s *Stack) MeshEntryOptions() []entries.Option { return s.entryOptions() }
