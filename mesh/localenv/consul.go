package localenv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// ConsulOptions configures StartConsul.
type ConsulOptions struct {
	// Dir is the working directory and holds consul.log. Required. A dev
	// agent keeps its state in memory, so nothing else is written there;
	// a persistent one keeps it under Dir/data.
	Dir string
	// HTTPPort is the HTTP API (and UI) port on 127.0.0.1; 0 picks a free
	// one. Every other port of the agent is always private and free.
	HTTPPort int
	// Node is the node name; empty means "portico-<HTTPPort>".
	Node string
	// Datacenter defaults to "dc1".
	Datacenter string
	// LogLevel defaults to "info" (the log is what a failed start shows).
	LogLevel string
	// Persistent runs a server that keeps its state on disk (Dir/data)
	// instead of a -dev agent that keeps it in memory: Stop and Start then
	// restart the same cluster, with its catalog, KV, config entries,
	// intentions and Connect CA (root key included), as a real agent's
	// restart does. See persistentArgs for what -dev turned on that it
	// spells out.
	Persistent bool
	// ClientHost is an address the HTTP, DNS and gRPC APIs listen on
	// besides 127.0.0.1 (same ports), for clients elsewhere (containers).
	// Empty: loopback only.
	ClientHost string
}

// consulPorts are the ports of one agent, all on 127.0.0.1.
type consulPorts struct {
	http, dns, grpc, serfLAN, serfWAN, server int
	// Consul hands out sidecar and expose-path ports from these ranges when
	// a registration leaves them unset. Its defaults (21000-21255 and
	// 21500-21755) are shared by every agent on the machine.
	sidecarMin, sidecarMax int
	exposeMin, exposeMax   int
}

// Consul is a Consul agent: a single server with Connect enabled
// (built-in CA), everything on loopback; in -dev mode (state in memory)
// unless ConsulOptions.Persistent.
//
// Stop and Start restart it on the same ports; a dev agent forgets every
// registration, intention and config entry when it stops, a persistent
// one keeps them.
type Consul struct {
	bin        string
	dir        string
	node       string
	datacenter string
	logLevel   string
	persistent bool
	clientHost string
	ports      consulPorts

	restartable
}

// StartConsul starts `consul agent -dev` (or a persistent server, see
// ConsulOptions.Persistent) and returns once a leader is elected and the
// Connect CA has a root, that is once sidecars can get certificates.
func StartConsul(ctx context.Context, opts ConsulOptions) (*Consul, error) {
	if opts.Dir == "" {
		return nil, errors.New("start consul: ConsulOptions.Dir is empty")
	}
	bin, err := Binary("consul")
	if err != nil {
		return nil, fmt.Errorf("start consul: %w", err)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start consul: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start consul: %w", err)
	}
	c := &Consul{
		bin: bin, dir: dir, node: opts.Node, datacenter: opts.Datacenter, logLevel: opts.LogLevel,
		persistent: opts.Persistent, clientHost: opts.ClientHost,
	}
	if c.datacenter == "" {
		c.datacenter = "dc1"
	}
	if c.logLevel == "" {
		c.logLevel = "info"
	}
	// The agent binds seven ports and two ranges that were free when
	// chosen; another test process may take one before the agent binds
	// it. A start that loses that race is tried again on new ports.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		if err := c.choosePorts(opts.HTTPPort); err != nil {
			return nil, fmt.Errorf("start consul: %w", err)
		}
		node := c.node
		if c.node == "" {
			c.node = "portico-" + strconv.Itoa(c.ports.http)
		}
		err := c.Start(ctx)
		if err == nil {
			return c, nil
		}
		if attempt == attempts || !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
		c.node = node
		// A persistent server's first run may have written its raft
		// configuration with the ports that lost the race.
		if err := os.RemoveAll(c.DataDir()); err != nil {
			return nil, fmt.Errorf("start consul: %w", err)
		}
	}
}

// choosePorts picks the agent's ports; httpPort, when not zero, is kept.
func (c *Consul) choosePorts(httpPort int) error {
	c.ports = consulPorts{http: httpPort}
	ports := portSet{}
	if err := ports.fill(false, &c.ports.http, &c.ports.grpc, &c.ports.server); err != nil {
		return err
	}
	// DNS and Serf listen on UDP as well as TCP.
	if err := ports.fill(true, &c.ports.dns, &c.ports.serfLAN, &c.ports.serfWAN); err != nil {
		return err
	}
	var err error
	if c.ports.sidecarMin, c.ports.sidecarMax, err = freePortRange(portRangeSize); err != nil {
		return err
	}
	c.ports.exposeMin, c.ports.exposeMax, err = freePortRange(portRangeSize)
	return err
}

// HTTPAddr returns host:port of the HTTP API.
func (c *Consul) HTTPAddr() string { return Loopback(c.ports.http) }

// HTTPURL returns the base URL of the HTTP API and UI.
func (c *Consul) HTTPURL() string { return "http://" + c.HTTPAddr() }

// GRPCAddr returns host:port of the plaintext gRPC (xDS) port that Envoy
// sidecars connect to.
func (c *Consul) GRPCAddr() string { return Loopback(c.ports.grpc) }

// Datacenter returns the agent's datacenter.
func (c *Consul) Datacenter() string { return c.datacenter }

// Node returns the agent's node name.
func (c *Consul) Node() string { return c.node }

// Dir returns the agent's directory.
func (c *Consul) Dir() string { return c.dir }

// DataDir returns where a persistent agent keeps its state (unused by a
// dev agent).
func (c *Consul) DataDir() string { return filepath.Join(c.dir, "data") }

// Persistent reports whether the agent keeps its state across a restart.
func (c *Consul) Persistent() bool { return c.persistent }

// Binary returns the consul executable, for callers that run its CLI
// (`consul config write`, `consul intention`).
func (c *Consul) Binary() string { return c.bin }

// SidecarPortRange returns the range Consul assigns sidecar ports from when
// a registration leaves the port unset.
func (c *Consul) SidecarPortRange() (lo, hi int) { return c.ports.sidecarMin, c.ports.sidecarMax }

// CLIEnv returns the environment for the consul CLI against this agent:
// the current one without any CONSUL_ setting of the developer's shell,
// plus CONSUL_HTTP_ADDR.
func (c *Consul) CLIEnv() []string {
	return environ([]string{"CONSUL_"}, "CONSUL_HTTP_ADDR="+c.HTTPURL())
}

// Client returns an API client for this agent.
func (c *Consul) Client() (*api.Client, error) {
	client, err := api.NewClient(&api.Config{Address: c.HTTPAddr(), Scheme: "http", Datacenter: c.datacenter})
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", c.HTTPAddr(), err)
	}
	return client, nil
}

// RotateCA makes the built-in Connect CA generate a new root key, by
// switching its key type (ec and rsa). Consul then cross-signs the new root
// with the old one, keeps both trusted, and re-issues every leaf within a
// jittered window (up to 30 s).
func (c *Consul) RotateCA(ctx context.Context) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	conf, _, err := client.Connect().CAGetConfig((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("read the CA configuration: %w", err)
	}
	newType := "rsa"
	if conf.Config["PrivateKeyType"] == "rsa" {
		newType = "ec"
	}
	conf.Config["PrivateKeyType"] = newType
	conf.Config["PrivateKeyBits"] = map[string]int{"rsa": 2048, "ec": 256}[newType]
	if _, err := client.Connect().CASetConfig(conf, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("rotate the CA: %w", err)
	}
	return nil
}

// LogPath returns the agent's log file.
func (c *Consul) LogPath() string { return filepath.Join(c.dir, "consul.log") }

// Start starts the agent again after Stop (or a crash), on the same ports,
// and waits as StartConsul does. It does nothing if the agent is running.
func (c *Consul) Start(ctx context.Context) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	return c.startOnce(ctx, func(ctx context.Context) (*Process, error) {
		return launchReady(ctx, Command{
			Name: "consul",
			Path: c.bin,
			Args: c.args(),
			// The agent must not pick up the addresses or tokens of the
			// developer's own Consul.
			Env:     environ([]string{"CONSUL_"}),
			Dir:     c.dir,
			LogPath: c.LogPath(),
		}, func(ctx context.Context) error { return consulReady(ctx, client) })
	})
}

func (c *Consul) args() []string {
	p := c.ports
	mode := []string{"-dev"}
	if c.persistent {
		mode = c.persistentArgs()
	}
	return append(append([]string{"agent"}, mode...),
		"-node", c.node,
		"-datacenter", c.datacenter,
		"-bind", "127.0.0.1",
		"-client", strings.TrimSpace("127.0.0.1 "+c.clientHost),
		"-http-port", strconv.Itoa(p.http),
		"-dns-port", strconv.Itoa(p.dns),
		// Plaintext gRPC for Envoy on loopback. A dev agent is a server,
		// and a server binds the TLS gRPC port 8503 by default, a fixed
		// port every agent on the machine would fight over; -1 turns it
		// off, which also keeps `consul connect envoy` from preferring it.
		"-grpc-port", strconv.Itoa(p.grpc),
		"-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(p.serfLAN),
		"-serf-wan-port", strconv.Itoa(p.serfWAN),
		"-server-port", strconv.Itoa(p.server),
		"-hcl", fmt.Sprintf("ports { sidecar_min_port = %d sidecar_max_port = %d expose_min_port = %d expose_max_port = %d }",
			p.sidecarMin, p.sidecarMax, p.exposeMin, p.exposeMax),
		"-log-level", c.logLevel,
	)
}

// persistentArgs make a server that keeps its state in DataDir what a dev
// agent is otherwise: a server that elects itself (bootstrap-expect 1),
// Connect with the built-in CA, the UI, and raft's timing at its fastest
// (performance.raft_multiplier 1; the default 5 stretches the first
// election to seconds). ACLs stay off, as in -dev; log level, addresses
// and ports are args' for both modes. What -dev also sets and a single
// loopback server does not need (fast gossip timings, no keyring file,
// the debug endpoints) is left out.
func (c *Consul) persistentArgs() []string {
	return []string{
		"-server", "-bootstrap-expect", "1",
		"-data-dir", c.DataDir(),
		"-ui",
		"-hcl", "connect { enabled = true }",
		"-hcl", "performance { raft_multiplier = 1 }",
		// No calls home from a test machine (-dev sets both).
		"-hcl", "disable_update_check = true",
		"-hcl", "disable_anonymous_signature = true",
	}
}

// consulReady succeeds once the agent has a leader and the Connect CA
// serves an active root: before that, registrations fail and sidecars get
// no certificate.
func consulReady(ctx context.Context, client *api.Client) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	leader, err := client.Status().LeaderWithQueryOptions(q)
	if err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	roots, _, err := client.Connect().CARoots(q)
	if err != nil {
		return err
	}
	for _, r := range roots.Roots {
		if r.Active && r.RootCertPEM != "" {
			return nil
		}
	}
	return errors.New("connect CA has no active root yet")
}

// Loopback returns 127.0.0.1:port.
func Loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func udpFree(port int) bool {
	conn, err := net.ListenPacket("udp", Loopback(port))
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func tcpFree(port int) bool {
	l, err := net.Listen("tcp", Loopback(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// portRangeSize is the size of the sidecar and expose port ranges of an
// agent: enough for every sidecar a test or the dev stack registers.
const portRangeSize = 32

// Port ranges are picked below Linux's default ephemeral range (32768 and
// up), where FreePort's ports and outgoing connections come from, and above
// the well-known ports of common servers.
const (
	rangeLow  = 20000
	rangeHigh = 32700
)

// freePortRange returns size consecutive ports that are free for TCP right
// now, starting at a random offset so that agents started side by side are
// unlikely to pick the same range (Consul binds them only later, when a
// sidecar starts).
func freePortRange(size int) (lo, hi int, err error) {
	slots := (rangeHigh - rangeLow) / size
	for range 50 {
		lo = rangeLow + rand.IntN(slots)*size
		ok := true
		for p := lo; p < lo+size; p++ {
			if !tcpFree(p) {
				ok = false
				break
			}
		}
		if ok {
			return lo, lo + size - 1, nil
		}
	}
	return 0, 0, fmt.Errorf("find %d free consecutive ports in %d-%d: none found", size, rangeLow, rangeHigh)
}
