package localenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Environment variables that override the RabbitMQ executables.
const (
	EnvRabbitMQServer = "PORTICO_RABBITMQ_SERVER"
	EnvEPMD           = "PORTICO_EPMD"
)

// defaultRabbitMQServer is the real start script of Debian's rabbitmq-server
// package. /usr/sbin/rabbitmq-server is a wrapper that, for root, cds to
// /var/lib/rabbitmq and re-runs the script through su as the rabbitmq user,
// which resets HOME and so loses our private Erlang cookie and state.
const defaultRabbitMQServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// RabbitMQOptions configures StartRabbitMQ.
type RabbitMQOptions struct {
	// Dir holds everything the node writes: Mnesia and message stores,
	// configuration, logs and the Erlang cookie. Reusing a Dir with the
	// same Port keeps durable queues and messages. Required.
	Dir string
	// Port is the AMQP port on 127.0.0.1; 0 picks a free one. The node
	// name is derived from it, so a reused Dir needs the same Port to find
	// its data.
	Port int
	// ManagementPort enables the management plugin (HTTP API and UI) on
	// this port; 0 leaves the plugin off, which starts faster.
	ManagementPort int
	// Host is an address the AMQP listener uses besides 127.0.0.1, on the
	// same port, for clients elsewhere (containers); guest may then log in
	// from any address. Empty: loopback only.
	Host string
}

// RabbitMQ is a private single-node RabbitMQ broker with its own epmd.
//
// The user guest/guest may connect from 127.0.0.1 (RabbitMQ allows it on
// loopback only). Stop and Start restart the broker on the same ports with
// the same data, so a test can simulate an outage; Close also stops epmd.
type RabbitMQ struct {
	server   string // rabbitmq-server start script
	epmd     string // epmd executable
	dir      string
	port     int // AMQP
	mgmtPort int // management HTTP API; 0 when disabled
	host     string
	distPort int // Erlang distribution (inter-node and CLI tools)
	epmdPort int // our private epmd
	node     string

	mu         sync.Mutex // guards the processes across Start, Stop, Close
	epmdProc   *Process   // nil until started or after Close
	brokerProc *Process   // nil while stopped
}

// StartRabbitMQ starts a private node and returns once an AMQP client can
// log in.
//
// Erlang nodes register with epmd, which by default is a system-wide daemon
// on port 4369 that outlives whoever started it. Each RabbitMQ here gets its
// own epmd on a private port instead (ERL_EPMD_PORT), started and stopped by
// us, and the node is told never to spawn one itself.
func StartRabbitMQ(ctx context.Context, opts RabbitMQOptions) (*RabbitMQ, error) {
	if opts.Dir == "" {
		return nil, errors.New("start rabbitmq: RabbitMQOptions.Dir is empty")
	}
	server, err := rabbitMQServer()
	if err != nil {
		return nil, err
	}
	epmd := os.Getenv(EnvEPMD)
	if epmd == "" {
		if epmd, err = exec.LookPath("epmd"); err != nil {
			return nil, fmt.Errorf("start rabbitmq: %w: install erlang-base (make deps) or set %s", err, EnvEPMD)
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start rabbitmq: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start rabbitmq: %w", err)
	}
	r := &RabbitMQ{server: server, epmd: epmd, dir: dir, port: opts.Port, mgmtPort: opts.ManagementPort, host: opts.Host}
	if err := FreePorts(&r.port, &r.distPort, &r.epmdPort); err != nil {
		return nil, err
	}
	r.node = fmt.Sprintf("portico-%d@localhost", r.port)
	if err := r.Start(ctx); err != nil {
		// Start leaves epmd up for the next Start; nobody will call
		// Close on a RabbitMQ that was never returned.
		closeCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = r.Close(closeCtx)
		return nil, err
	}
	return r, nil
}

// URL returns the AMQP URL for guest on the default vhost.
func (r *RabbitMQ) URL() string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.port)
}

// ManagementURL returns the base URL of the management HTTP API, or "" when
// the plugin is disabled.
func (r *RabbitMQ) ManagementURL() string {
	if r.mgmtPort == 0 {
		return ""
	}
	return fmt.Sprintf("http://127.0.0.1:%d/", r.mgmtPort)
}

// Port returns the AMQP port.
func (r *RabbitMQ) Port() int { return r.port }

// Start starts the broker (and epmd, if it is not running) on the same
// ports and data as before, and returns once an AMQP client can log in and,
// if enabled, the management port accepts connections. It does nothing if
// the broker is running.
func (r *RabbitMQ) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if running(r.brokerProc) {
		return nil
	}
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	if !running(r.epmdProc) {
		if err := r.startEPMD(ctx); err != nil {
			return err
		}
	}
	if err := r.writeConfig(); err != nil {
		return err
	}
	proc, err := StartProcess(Command{
		Name: "rabbitmq",
		Path: r.server,
		Env:  r.env(),
		Dir:  r.dir,
		// RabbitMQ logs to stdout (see writeConfig), so this file is the
		// node's log.
		LogPath: filepath.Join(r.dir, "rabbitmq.log"),
		// The start script traps SIGTERM and stops the node gracefully;
		// the Erlang VM in the same group also gets it and shuts down.
	})
	if err != nil {
		return err
	}
	if err := waitReady(ctx, proc, r.dialAMQP); err != nil {
		return abort(proc, err)
	}
	if r.mgmtPort != 0 {
		// Plugins start after the AMQP listener, so it being up does not
		// mean the management API is.
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.mgmtPort))
		if err := waitReady(ctx, proc, dialProbe(addr)); err != nil {
			return abort(proc, fmt.Errorf("management API: %w", err))
		}
	}
	r.brokerProc = proc
	return nil
}

// Stop shuts the broker down gracefully and waits; if ctx ends first it is
// killed. Data and epmd are kept for Start. Stopping a stopped broker does
// nothing.
func (r *RabbitMQ) Stop(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopBroker(ctx)
}

// Kill ends the broker with SIGKILL, as a crash would (no graceful
// shutdown, clients see their connections reset), and waits until it is
// gone. Data and epmd are kept for Start; what the broker confirmed is on
// disk. Killing a stopped broker does nothing.
func (r *RabbitMQ) Kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.brokerProc == nil {
		return nil
	}
	if err := r.brokerProc.Kill(); err != nil {
		return err
	}
	r.brokerProc = nil
	// The Erlang VM, reaped, may hold its listener a moment longer while
	// the kernel tears its memory down: a crash is over when clients are
	// refused.
	ctx, cancel := context.WithTimeout(context.Background(), killGrace)
	defer cancel()
	probe := dialProbe(net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)))
	return Poll(ctx, 20*time.Millisecond, func(ctx context.Context) error {
		if probe(ctx) == nil {
			return errors.New("the AMQP port still accepts connections")
		}
		return nil
	})
}

// Close stops the broker and epmd. The data stays in Dir.
func (r *RabbitMQ) Close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// epmd goes last: a node still running would lose its registration.
	err := r.stopBroker(ctx)
	if r.epmdProc != nil {
		err = errors.Join(err, r.epmdProc.Stop(ctx))
		r.epmdProc = nil
	}
	return err
}

func (r *RabbitMQ) stopBroker(ctx context.Context) error {
	if r.brokerProc == nil {
		return nil
	}
	err := r.brokerProc.Stop(ctx)
	r.brokerProc = nil
	return err
}

func (r *RabbitMQ) startEPMD(ctx context.Context) error {
	proc, err := StartProcess(Command{
		Name: "epmd",
		Path: r.epmd,
		// In the foreground (no -daemon), so it stays in our process
		// group and dies with us.
		Args:    []string{"-address", "127.0.0.1", "-port", strconv.Itoa(r.epmdPort)},
		Dir:     r.dir,
		LogPath: filepath.Join(r.dir, "epmd.log"),
	})
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.epmdPort))
	if err := waitReady(ctx, proc, dialProbe(addr)); err != nil {
		return abort(proc, err)
	}
	r.epmdProc = proc
	return nil
}

// env is the broker's environment: everything the start scripts would
// otherwise read from /etc/rabbitmq or /var/lib/rabbitmq points into Dir,
// and inherited RABBITMQ_* and ERL_* settings are dropped.
func (r *RabbitMQ) env() []string {
	p := func(name string) string { return filepath.Join(r.dir, name) }
	env := []string{
		"HOME=" + r.dir, // where Erlang keeps the cookie
		"ERL_EPMD_PORT=" + strconv.Itoa(r.epmdPort),
		"ERL_CRASH_DUMP=" + p("erl_crash.dump"),
		"RABBITMQ_NODENAME=" + r.node,
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(r.distPort),
		"RABBITMQ_MNESIA_BASE=" + p("mnesia"),
		"RABBITMQ_LOG_BASE=" + p("log"),
		"RABBITMQ_CONFIG_FILE=" + p("rabbitmq.conf"),
		// Both default to files under /etc/rabbitmq that the host may have.
		"RABBITMQ_CONFIG_FILES=" + p("conf.d"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + p("advanced.config"),
		"RABBITMQ_CONF_ENV_FILE=" + p("rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + p("enabled_plugins"),
		// -start_epmd false: fail rather than spawn a system epmd that
		// would escape our process group and outlive us.
		// inet_dist_use_interface: the distribution port listens on
		// loopback only, like everything else.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
	}
	// These two replace the configuration file's listeners: with a Host
	// the file lists both addresses (writeConfig).
	if r.host == "" {
		env = append(env, "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1", "RABBITMQ_NODE_PORT="+strconv.Itoa(r.port))
	}
	return environ([]string{"RABBITMQ_", "ERL_", "HOME"}, env...)
}

// writeConfig (re)writes the node's configuration files; they are derived
// from the options, so rewriting them on every start is safe.
func (r *RabbitMQ) writeConfig() error {
	plugins := "[]."
	conf := []string{
		"# Written by localenv on every start; edits are lost.",
		// guest may only log in over loopback, which is all we listen on.
		"loopback_users.guest = true",
		// The node log goes to stdout, which StartProcess sends to
		// rabbitmq.log; start errors then quote it.
		"log.console = true",
		"log.console.level = info",
		"log.file = false",
		// The default 50MB free-disk alarm blocks publishers on an
		// almost full CI disk, which shows up as hanging tests.
		"disk_free_limit.absolute = 1MB",
	}
	if r.host != "" {
		port := strconv.Itoa(r.port)
		conf = append(conf,
			"listeners.tcp.loopback = 127.0.0.1:"+port,
			"listeners.tcp.host = "+net.JoinHostPort(r.host, port),
			// Clients of Host are not on loopback.
			"loopback_users = none",
		)
	}
	if r.mgmtPort != 0 {
		plugins = "[rabbitmq_management]."
		conf = append(conf,
			"management.tcp.ip = 127.0.0.1",
			"management.tcp.port = "+strconv.Itoa(r.mgmtPort),
		)
	}
	files := map[string]string{
		"rabbitmq.conf":     strings.Join(conf, "\n") + "\n",
		"enabled_plugins":   plugins + "\n",
		"rabbitmq-env.conf": "# Intentionally empty: the environment comes from localenv.\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("start rabbitmq: %w", err)
		}
	}
	return nil
}

func (r *RabbitMQ) dialAMQP(ctx context.Context) error {
	// amqp091 has no context-aware dial; probeConn makes the handshake
	// end with ctx.
	release := func() {}
	defer func() { release() }()
	conn, err := amqp.DialConfig(r.URL(), amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			conn, rel, err := probeConn(ctx, addr)
			if err != nil {
				return nil, err
			}
			release = rel
			return conn, nil
		},
	})
	if err != nil {
		return err
	}
	return conn.Close()
}

// rabbitMQServer returns the path of the rabbitmq-server start script.
func rabbitMQServer() (string, error) {
	if path := os.Getenv(EnvRabbitMQServer); path != "" {
		return path, nil
	}
	if _, err := os.Stat(defaultRabbitMQServer); err == nil {
		return defaultRabbitMQServer, nil
	}
	// Elsewhere (Homebrew, generic-unix tarball) the script on PATH is the
	// real one.
	if path, err := exec.LookPath("rabbitmq-server"); err == nil {
		return path, nil
	}
	return "", fmt.Errorf("start rabbitmq: no rabbitmq-server at %s or on PATH: install rabbitmq-server (make deps) or set %s", defaultRabbitMQServer, EnvRabbitMQServer)
}
