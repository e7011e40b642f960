package localenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// EnvRedisServer overrides the redis-server executable.
const EnvRedisServer = "PORTICO_REDIS_SERVER"

// RedisOptions configures StartRedis.
type RedisOptions struct {
	// Dir is the working directory and holds redis.log. Required.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Host is an address the server listens on besides 127.0.0.1, for
	// clients elsewhere (containers); protected mode is then off, so any
	// client of that address may connect without a password. Empty:
	// loopback only.
	Host string
}

// Redis is a Redis server without persistence. Stop and Start restart it on
// the same port, so a test can simulate an outage and the recovery; the
// data does not survive the restart.
type Redis struct {
	bin  string
	dir  string
	port int
	host string

	restartable
}

// StartRedis starts redis-server and returns once it answers PING.
func StartRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	if opts.Dir == "" {
		return nil, errors.New("start redis: RedisOptions.Dir is empty")
	}
	bin := os.Getenv(EnvRedisServer)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return nil, fmt.Errorf("start redis: %w: install redis-server (make deps) or set %s", err, EnvRedisServer)
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	r := &Redis{bin: bin, dir: dir, port: opts.Port, host: opts.Host}
	if err := FreePorts(&r.port); err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Addr returns host:port for clients.
func (r *Redis) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
}

// Port returns the TCP port the server listens on.
func (r *Redis) Port() int { return r.port }

// Start starts the server again after Stop (or a crash), on the same port,
// and returns once it answers PING. It does nothing if the server is
// running.
func (r *Redis) Start(ctx context.Context) error {
	return r.startOnce(ctx, func(ctx context.Context) (*Process, error) {
		return launchReady(ctx, Command{
			Name: "redis",
			Path: r.bin,
			Args: append(r.listenArgs(),
				"--port", strconv.Itoa(r.port),
				"--dir", r.dir,
				// No RDB snapshots and no AOF: test data is disposable and
				// a restart must not bring stale keys back.
				"--save", "",
				"--appendonly", "no",
				// Stay in the foreground: the process we started is the
				// server, so Stop and the parent-death signal reach it.
				"--daemonize", "no",
				"--logfile", "",
			),
			Dir:     r.dir,
			LogPath: filepath.Join(r.dir, "redis.log"),
		}, r.ping)
	})
}

// listenArgs: loopback in protected mode, or loopback and Host without.
func (r *Redis) listenArgs() []string {
	if r.host == "" {
		return []string{"--bind", "127.0.0.1", "--protected-mode", "yes"}
	}
	return []string{"--bind", "127.0.0.1", r.host, "--protected-mode", "no"}
}

// ping speaks just enough RESP to send PING and expect +PONG. A full client
// would bring a connection pool (and its log output) for a one-shot check.
func (r *Redis) ping(ctx context.Context) error {
	conn, release, err := probeConn(ctx, r.Addr())
	if err != nil {
		return err
	}
	defer release()
	defer conn.Close()
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
