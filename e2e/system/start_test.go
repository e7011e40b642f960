package system_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portico-mesh/portico/mesh/entries"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// startSystem starts the whole system and returns once a client can log
// in through the ingress. On failure it returns the partly started system
// (or nil if nothing started), which the caller stops.
func startSystem(ctx context.Context) (*system, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return nil, err
	}
	// /tmp rather than $TMPDIR keeps PostgreSQL's socket path short; 0755
	// lets PostgreSQL, which runs as another user under root, enter it.
	dir, err := os.MkdirTemp("/tmp", "portico-system-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	s := &system{dir: dir, root: root, adminEmail: "admin@portico.test", adminPassword: "admin-" + randomHex(12)}

	steps := []struct {
		name  string
		start func(context.Context) error
	}{
		{"servers and binaries", s.startServersAndBuild},
		{"mesh configuration", s.applyMeshEntries},
		{"services", s.startServices},
		{"ingress", s.startIngress},
		{"client accounts", s.createAccounts},
	}
	for _, step := range steps {
		begin := time.Now()
		if err := step.start(ctx); err != nil {
			return s, fmt.Errorf("%s: %w", step.name, err)
		}
		fmt.Fprintf(os.Stderr, "e2e/system: %s ready in %v\n", step.name, time.Since(begin).Round(time.Millisecond))
	}
	return s, nil
}

// startServersAndBuild builds the binaries while PostgreSQL, RabbitMQ,
// Redis and Consul start: each mostly waits, so together they take as
// long as the slowest.
func (s *system) startServersAndBuild(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, 5)
	wg.Go(func() { errs[0] = s.build(ctx) })
	wg.Go(func() {
		pg, err := localenv.StartPostgres(ctx, localenv.PostgresOptions{Dir: s.path("postgres")})
		if err == nil {
			s.postgres = pg
			s.onStop("postgres", pg.Stop)
		}
		errs[1] = err
	})
	wg.Go(func() {
		r, err := localenv.StartRabbitMQ(ctx, localenv.RabbitMQOptions{Dir: s.path("rabbitmq")})
		if err == nil {
			s.rabbitMQ = r
			s.onStop("rabbitmq", r.Close)
		}
		errs[2] = err
	})
	wg.Go(func() {
		r, err := localenv.StartRedis(ctx, localenv.RedisOptions{Dir: s.path("redis")})
		if err == nil {
			s.redis = r
			s.onStop("redis", r.Stop)
		}
		errs[3] = err
	})
	wg.Go(func() {
		c, err := localenv.StartConsul(ctx, localenv.ConsulOptions{Dir: s.path("consul")})
		if err == nil {
			s.consul = c
			s.started(c.Pid())
			s.onStop("consul", c.Stop)
		}
		errs[4] = err
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var err error
	s.consulAPI, err = s.consul.Client()
	return err
}

// build compiles the three binaries of this checkout in one go build.
func (s *system) build(ctx context.Context) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go toolchain not on PATH: %w", err)
	}
	out := s.path("bin") + string(filepath.Separator)
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "./services/cmd/users", "./services/cmd/products", "./edge/cmd/edge")
	cmd.Dir = s.root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, b)
	}
	return nil
}

// applyMeshEntries writes mesh/entries as the dev stack does (intentions
// deny by default) before any sidecar starts.
func (s *system) applyMeshEntries(ctx context.Context) error {
	if err := entries.Apply(ctx, s.consulAPI); err != nil {
		return err
	}
	for _, db := range []string{"users", "products"} {
		if err := s.createDatabase(ctx, db); err != nil {
			return err
		}
	}
	return nil
}

func (s *system) createDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.postgres.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}
