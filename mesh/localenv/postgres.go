package localenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// Environment variables that adjust how PostgreSQL is found and run.
const (
	// EnvPostgresBin names the directory holding initdb and postgres.
	EnvPostgresBin = "PORTICO_PG_BIN"
	// EnvPostgresUser names the account PostgreSQL runs as when we are root.
	EnvPostgresUser = "PORTICO_PG_USER"
)

// defaultPostgresBin is where Debian's postgresql-15 package installs the
// server. It is preferred over PATH so that a wrapper or another major
// version found first on PATH cannot change what the tests run against.
const defaultPostgresBin = "/usr/lib/postgresql/15/bin"

// PostgresOptions configures StartPostgres.
type PostgresOptions struct {
	// Dir holds the cluster (Dir/data), its Unix socket (Dir/run) and logs.
	// If Dir/data already holds a cluster it is reused as is, which lets a
	// dev runner keep data across runs. Required.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Host is an address the server listens on besides 127.0.0.1, for
	// clients elsewhere (containers reach the host's address, not its
	// loopback). Clients from any address are then trusted as local ones
	// are: it is for throwaway test servers only. Empty: loopback only.
	Host string
}

// Postgres is a running PostgreSQL server with trust authentication on
// 127.0.0.1 and the superuser "postgres".
type Postgres struct {
	dir  string
	port int
	cmd  Command

	mu   sync.Mutex // guards proc across Start and Stop
	proc *Process
}

// StartPostgres initializes a cluster in opts.Dir unless one is there, starts
// the server tuned for tests (no fsync, no full page writes, asynchronous
// commit, 300 connections), and returns once it accepts connections.
//
// When the caller is root the server runs as an unprivileged user, because
// PostgreSQL refuses to run as root: $PORTICO_PG_USER, else "postgres",
// else "nobody". That user must be able to reach opts.Dir; the directory
// itself is created and chowned to it.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	if opts.Dir == "" {
		return nil, errors.New("start postgres: PostgresOptions.Dir is empty")
	}
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()

	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	runDir := filepath.Join(dir, "run")
	if err := preparePostgresDirs(cred, dir, dataDir, runDir); err != nil {
		return nil, err
	}
	port := opts.Port
	if err := FreePorts(&port); err != nil {
		return nil, err
	}

	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := initdb(ctx, bin, cred, dir, dataDir); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}

	// A Unix socket path must fit in sun_path (107 bytes). Inside a deep
	// Dir it may not; then the server listens on TCP only, which is all
	// that URL uses.
	socketDir := runDir
	if len(socketDir)+len("/.s.PGSQL.65535.lock") > 107 {
		socketDir = ""
	}
	listen, err := postgresListen(dir, opts.Host)
	if err != nil {
		return nil, err
	}
	pg := &Postgres{dir: dir, port: port, cmd: Command{
		Name: "postgres",
		Path: filepath.Join(bin, "postgres"),
		Args: append([]string{
			"-D", dataDir,
			"-p", strconv.Itoa(port),
			"-k", socketDir,
			// Durability is worthless for throwaway test data and costs
			// most of the time of DDL-heavy migrations.
			"-c", "fsync=off",
			"-c", "full_page_writes=off",
			"-c", "synchronous_commit=off",
			// Parallel tests each open pools; the default 100 runs out.
			"-c", "max_connections=300",
		}, listen...),
		Dir:        dir,
		LogPath:    filepath.Join(dir, "postgres.log"),
		Credential: cred,
		// SIGINT is PostgreSQL's "fast shutdown": it disconnects clients.
		// SIGTERM ("smart") would wait for every client to go away, which
		// leaked pools in a test could make take forever.
		StopSignal: syscall.SIGINT,
	}}
	if err := pg.Start(ctx); err != nil {
		return nil, err
	}
	return pg, nil
}

// Start starts the server again after Stop (or a crash) on the same
// cluster and port, and returns once it accepts connections. It does
// nothing while the server runs.
func (pg *Postgres) Start(ctx context.Context) error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if running(pg.proc) {
		return nil
	}
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	proc, err := launchReady(ctx, pg.cmd, pg.ping)
	if err != nil {
		return err
	}
	pg.proc = proc
	return nil
}

// URL returns a connection URL for database db as the superuser.
func (pg *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, db)
}

// Port returns the TCP port the server listens on.
func (pg *Postgres) Port() int { return pg.port }

// postgresListen returns the server's listen settings: loopback only, or
// loopback and host with an authentication file (written into dir on
// every start) that trusts every client address.
func postgresListen(dir, host string) ([]string, error) {
	if host == "" {
		return []string{"-c", "listen_addresses=127.0.0.1"}, nil
	}
	hba := filepath.Join(dir, "pg_hba.conf")
	rules := "# Written by localenv on every start (PostgresOptions.Host).\n" +
		"local all all trust\n" +
		"host all all all trust\n"
	if err := os.WriteFile(hba, []byte(rules), 0o644); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	return []string{"-c", "listen_addresses=127.0.0.1," + host, "-c", "hba_file=" + hba}, nil
}

// Dir returns the instance directory.
func (pg *Postgres) Dir() string { return pg.dir }

// Stop shuts the server down (fast shutdown: clients are disconnected) and
// waits for it; if ctx ends first the server is killed. The cluster stays
// in Dir, so StartPostgres on the same Dir brings the data back.
func (pg *Postgres) Stop(ctx context.Context) error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return pg.proc.Stop(ctx)
}

func (pg *Postgres) ping(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// postgresBin returns the directory holding initdb and postgres.
func postgresBin() (string, error) {
	if dir := os.Getenv(EnvPostgresBin); dir != "" {
		return dir, nil
	}
	if _, err := os.Stat(filepath.Join(defaultPostgresBin, "postgres")); err == nil {
		return defaultPostgresBin, nil
	}
	// Other layouts (Homebrew, other distributions) put the server on PATH.
	if path, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(path), nil
	}
	return "", fmt.Errorf("start postgres: no PostgreSQL server in %s or on PATH: install postgresql-15 (make deps) or set %s", defaultPostgresBin, EnvPostgresBin)
}

// postgresCredential returns nil when the process is not root (PostgreSQL
// runs as us) and otherwise the unprivileged account to run it as.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	names := []string{"postgres", "nobody"}
	if name := os.Getenv(EnvPostgresUser); name != "" {
		names = []string{name}
	}
	for _, name := range names {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil || uid == 0 {
			continue
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			continue
		}
		// Groups is empty, so the child also drops root's supplementary
		// groups.
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("start postgres: running as root and none of the users %q exists to run PostgreSQL as; set %s", names, EnvPostgresUser)
}

// preparePostgresDirs creates the instance directories with the modes
// PostgreSQL insists on and, when it runs as another user, hands them over.
func preparePostgresDirs(cred *syscall.Credential, dir, dataDir, runDir string) error {
	for _, d := range []string{dir, dataDir, runDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
	}
	if cred == nil {
		return nil
	}
	for _, d := range []string{dir, dataDir, runDir} {
		if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
	}
	return checkReachable(dir, cred)
}

// checkReachable reports a clear error when the user of cred cannot walk
// down to dir, instead of the "permission denied" PostgreSQL would log. A
// directory from os.MkdirTemp is mode 0700 and is the usual culprit.
func checkReachable(dir string, cred *syscall.Credential) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil // cannot tell; let PostgreSQL report it
		}
		perm := fi.Mode().Perm()
		var canSearch bool
		switch {
		case st.Uid == cred.Uid:
			canSearch = perm&0o100 != 0
		case st.Gid == cred.Gid:
			canSearch = perm&0o010 != 0
		default:
			canSearch = perm&0o001 != 0
		}
		if !canSearch {
			return fmt.Errorf("start postgres: PostgreSQL runs as uid %d, which cannot enter %s (mode %v); make it searchable (chmod o+x) or put Dir elsewhere", cred.Uid, d, perm)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// initdb creates a cluster in dataDir: superuser "postgres", trust
// authentication (the server only listens on loopback), UTF8 with the C
// locale (the same on every machine, and needs no installed locales), and
// no fsync, which makes initdb several times faster.
func initdb(ctx context.Context, bin string, cred *syscall.Credential, dir, dataDir string) error {
	proc, err := StartProcess(Command{
		Name: "initdb",
		Path: filepath.Join(bin, "initdb"),
		Args: []string{
			"-D", dataDir,
			"-U", "postgres",
			"-E", "UTF8",
			"--locale=C",
			"--auth=trust",
			"--no-sync",
			"--no-instructions",
		},
		Dir:        dir,
		LogPath:    filepath.Join(dir, "initdb.log"),
		Credential: cred,
	})
	if err != nil {
		return err
	}
	select {
	case <-proc.Done():
		if err := proc.Err(); err != nil {
			return startError(proc, fmt.Errorf("initdb: %w", err))
		}
		return nil
	case <-ctx.Done():
		return abort(proc, fmt.Errorf("initdb: %w", context.Cause(ctx)))
	}
}
