// Package localenvtest gives the tests of a package real PostgreSQL, Redis,
// RabbitMQ and Consul servers.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) {
//		os.Exit(localenvtest.Run(m, localenvtest.Postgres, localenvtest.RabbitMQ))
//	}
//
// and read the addresses in tests with PostgresURL, RedisAddr, AMQPURL and
// ConsulAddr (or ConsulClient).
//
// Run starts a private server (see package localenv) for every need whose
// environment variable is unset, so `go test` works on a machine with the
// server packages installed and nothing running. Set the variables to
// share long-running servers between test binaries instead, for example in
// CI or from a dev runner; then Run starts nothing. Tests are never skipped
// for lack of a server.
//
// A test that stops and restarts a server to simulate an outage must not
// do it to the shared one: StartRabbitMQ and StartRedis give it its own.
package localenvtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// Environment variables that carry the servers' addresses to tests, and
// that, when set before Run, make it reuse those servers.
const (
	// EnvPostgresURL is a superuser URL for the "postgres" database.
	EnvPostgresURL = "PORTICO_TEST_POSTGRES_URL"
	// EnvRedisAddr is a Redis host:port.
	EnvRedisAddr = "PORTICO_TEST_REDIS_ADDR"
	// EnvAMQPURL is an AMQP URL whose user may declare and publish on the
	// default vhost.
	EnvAMQPURL = "PORTICO_TEST_AMQP_URL"
	// EnvConsulHTTPAddr is host:port of a Consul agent's HTTP API with
	// Connect enabled and no ACLs (a -dev agent).
	EnvConsulHTTPAddr = "PORTICO_TEST_CONSUL_HTTP_ADDR"
)

// Need names a server that the tests of a package use.
type Need int

// The servers Run can provide.
const (
	Postgres Need = iota + 1
	Redis
	RabbitMQ
	Consul
)

func (n Need) String() string {
	switch n {
	case Postgres:
		return "Postgres"
	case Redis:
		return "Redis"
	case RabbitMQ:
		return "RabbitMQ"
	case Consul:
		return "Consul"
	default:
		return fmt.Sprintf("Need(%d)", int(n))
	}
}

func (n Need) envVar() string {
	switch n {
	case Postgres:
		return EnvPostgresURL
	case Redis:
		return EnvRedisAddr
	case RabbitMQ:
		return EnvAMQPURL
	case Consul:
		return EnvConsulHTTPAddr
	default:
		return ""
	}
}

const (
	// startTimeout bounds starting the servers. RabbitMQ takes about 5 s
	// on an idle machine, but many test binaries starting servers at once
	// on few CPUs slow every one of them down.
	startTimeout = 3 * time.Minute
	// stopTimeout bounds a graceful stop before the server is killed.
	stopTimeout = 30 * time.Second
)

// Run provides the needed servers, runs the tests and stops the servers it
// started, returning the exit code for os.Exit. If a server cannot be
// started, Run prints why and returns 1 without running any test.
func Run(m *testing.M, needs ...Need) int {
	// testing.Verbose needs parsed flags; m.Run would parse them anyway.
	if !flag.Parsed() {
		flag.Parse()
	}
	var missing []Need
	seen := map[Need]bool{}
	for _, n := range needs {
		if n.envVar() == "" {
			fmt.Fprintf(os.Stderr, "testenv: unknown need %v\n", n)
			return 1
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		if os.Getenv(n.envVar()) == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return m.Run()
	}

	sweepStale()
	root, err := makeRoot()
	if root != "" {
		defer func() {
			if err := os.RemoveAll(root); err != nil {
				fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
			}
		}()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		return 1
	}

	servers, err := startAll(root, missing)
	defer stopAll(servers)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		return 1
	}
	// Unset again afterwards: the variables were empty (that is why the
	// servers were started) and must not leak into later code in this
	// process.
	defer func() {
		for _, s := range servers {
			os.Unsetenv(s.need.envVar())
		}
	}()
	for _, s := range servers {
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "testenv: started %v in %v (%s=%s)\n", s.need, s.took.Round(time.Millisecond), s.need.envVar(), s.value)
		}
		if err := os.Setenv(s.need.envVar(), s.value); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
			return 1
		}
	}
	return m.Run()
}

// Run keeps its servers under tmpDir/rootPrefix*. /tmp rather than
// $TMPDIR keeps the paths short (PostgreSQL's Unix socket path is limited
// to 107 bytes) and reachable by the PostgreSQL user.
const (
	tmpDir     = "/tmp"
	rootPrefix = "portico-testenv-"
	// ownerFile holds the pid of the test binary that owns a root.
	ownerFile = "owner.pid"
	// staleAfter is how old a root without ownerFile must be before
	// sweepStale removes it. Run writes the file right after creating the
	// directory, so only a binary that died in between (or one built
	// before ownerFile existed) leaves such a root; waiting longer than
	// any test run (`make test` allows 20 minutes) never pulls a
	// directory from under a live one.
	staleAfter = time.Hour
)

// makeRoot creates the directory for Run's servers and records the owner.
// It returns the directory even with an error, for the caller to remove.
func makeRoot() (string, error) {
	root, err := os.MkdirTemp(tmpDir, rootPrefix)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return root, err
	}
	// PostgreSQL runs as an unprivileged user when tests run as root and
	// must be able to enter its directory below root.
	return root, os.Chmod(root, 0o755)
}

// sweepStale removes roots left behind by test binaries that died without
// running Run's cleanup (a panic in a goroutine, os.Exit in a test, a
// -timeout kill). Their servers died with them through the parent-death
// signal, but a PostgreSQL cluster and RabbitMQ's data, tens of MB per
// run, would pile up in /tmp.
func sweepStale() {
	entries, err := os.ReadDir(tmpDir)
	if err != nil {
		return // nothing to sweep that we can see
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), rootPrefix) {
			continue
		}
		dir := filepath.Join(tmpDir, e.Name())
		if !ownerAlive(dir) {
			_ = os.RemoveAll(dir) // best effort; it is someone else's leftover
		}
	}
}

// ownerAlive reports whether the test binary that made root may still use
// it. When unsure it says yes: a leftover kept is cheaper than a live
// server's directory removed.
func ownerAlive(root string) bool {
	b, err := os.ReadFile(filepath.Join(root, ownerFile))
	if err != nil {
		fi, err := os.Stat(root)
		return err != nil || time.Since(fi.ModTime()) < staleAfter
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return true
	}
	// A reused pid keeps the directory until the pid is free again.
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// server is one server started by Run.
type server struct {
	need  Need
	value string // the environment variable's value
	took  time.Duration
	stop  func(context.Context) error
}

// startAll starts the servers concurrently: the slowest (RabbitMQ) then
// sets the wait instead of the sum. It returns the servers that started
// even when another failed, so the caller can stop them.
func startAll(root string, needs []Need) ([]server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	servers := make([]server, len(needs))
	errs := make([]error, len(needs))
	var wg sync.WaitGroup
	for i, n := range needs {
		wg.Go(func() {
			servers[i], errs[i] = start(ctx, filepath.Join(root, strings.ToLower(n.String())), n)
		})
	}
	wg.Wait()
	var started []server
	for i, s := range servers {
		if errs[i] == nil {
			started = append(started, s)
		}
	}
	return started, errors.Join(errs...)
}

func start(ctx context.Context, dir string, n Need) (server, error) {
	begin := time.Now()
	s := server{need: n}
	switch n {
	case Postgres:
		pg, err := localenv.StartPostgres(ctx, localenv.PostgresOptions{Dir: dir})
		if err != nil {
			return s, err
		}
		s.value, s.stop = pg.URL("postgres"), pg.Stop
	case Redis:
		r, err := localenv.StartRedis(ctx, localenv.RedisOptions{Dir: dir})
		if err != nil {
			return s, err
		}
		s.value, s.stop = r.Addr(), r.Stop
	case RabbitMQ:
		r, err := localenv.StartRabbitMQ(ctx, localenv.RabbitMQOptions{Dir: dir})
		if err != nil {
			return s, err
		}
		s.value, s.stop = r.URL(), r.Close
	case Consul:
		c, err := localenv.StartConsul(ctx, localenv.ConsulOptions{Dir: dir})
		if err != nil {
			return s, err
		}
		s.value, s.stop = c.HTTPAddr(), c.Stop
	}
	s.took = time.Since(begin)
	return s, nil
}

// stopAll stops the servers concurrently and reports failures, which do not
// change the tests' verdict.
func stopAll(servers []server) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.stop(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "testenv: stop %v: %v\n", s.need, err)
			}
		})
	}
	wg.Wait()
}

// PostgresURL returns the superuser URL of the "postgres" database of the
// test server. Create a database per test rather than sharing this one.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, Postgres)
}

// RedisAddr returns host:port of the test Redis server.
func RedisAddr(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, Redis)
}

// AMQPURL returns the URL of the test RabbitMQ broker.
func AMQPURL(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, RabbitMQ)
}

// ConsulAddr returns host:port of the test Consul agent's HTTP API.
func ConsulAddr(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, Consul)
}

// ConsulClient returns an API client for the test Consul agent. The agent
// is shared by the package's tests: use names unique to the test for
// anything registered or written there.
func ConsulClient(tb testing.TB) *api.Client {
	tb.Helper()
	addr := lookup(tb, Consul)
	client, err := api.NewClient(&api.Config{Address: addr, Scheme: "http"})
	if err != nil {
		tb.Fatalf("testenv: consul client for %s: %v", addr, err)
	}
	return client
}

func lookup(tb testing.TB, n Need) string {
	tb.Helper()
	v := os.Getenv(n.envVar())
	if v == "" {
		tb.Fatalf("testenv: %s is not set: call localenvtest.Run(m, localenvtest.%v) from TestMain, or set it to an existing server", n.envVar(), n)
	}
	return v
}

// StartRabbitMQ starts a broker that belongs to the calling test alone, so
// the test may Stop and Start it. It is closed when the test ends.
func StartRabbitMQ(tb testing.TB) *localenv.RabbitMQ {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), startTimeout)
	defer cancel()
	r, err := localenv.StartRabbitMQ(ctx, localenv.RabbitMQOptions{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("testenv: start a private RabbitMQ: %v", err)
	}
	// Registered after TempDir's cleanup, so it runs before the directory
	// is removed.
	tb.Cleanup(func() { stopForTest(tb, "RabbitMQ", r.Close) })
	return r
}

// StartRedis starts a Redis server that belongs to the calling test alone,
// so the test may Stop and Start it. It is stopped when the test ends.
func StartRedis(tb testing.TB) *localenv.Redis {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), startTimeout)
	defer cancel()
	r, err := localenv.StartRedis(ctx, localenv.RedisOptions{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("testenv: start a private Redis: %v", err)
	}
	tb.Cleanup(func() { stopForTest(tb, "Redis", r.Stop) })
	return r
}

// StartConsul starts a Consul dev agent that belongs to the calling test
// alone, so the test may write intentions and config entries freely, or
// Stop and Start it. It is stopped when the test ends.
func StartConsul(tb testing.TB) *localenv.Consul {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), startTimeout)
	defer cancel()
	c, err := localenv.StartConsul(ctx, localenv.ConsulOptions{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("testenv: start a private Consul: %v", err)
	}
	tb.Cleanup(func() { stopForTest(tb, "Consul", c.Stop) })
	return c
}

// stopForTest runs a stop function from a cleanup, where tb.Context is
// already canceled.
func stopForTest(tb testing.TB, what string, stop func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := stop(ctx); err != nil {
		tb.Errorf("testenv: stop the private %s: %v", what, err)
	}
}
