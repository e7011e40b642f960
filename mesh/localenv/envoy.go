package localenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
)

// EnvoyOptions configures StartEnvoy.
type EnvoyOptions struct {
	// Name labels the instance in file names and errors. Required.
	Name string
	// Dir holds the bootstrap file and the log. Required.
	Dir string
	// Bootstrap renders the bootstrap YAML for the admin port chosen.
	// Required.
	Bootstrap func(adminPort int) ([]byte, error)
	// AdminPort is the admin port on 127.0.0.1; 0 picks a free one.
	AdminPort int
	// WaitLive makes Start wait for /ready to answer LIVE, which an Envoy
	// fed by xDS does only once its first configuration arrived. Without
	// it Start returns as soon as the admin interface answers.
	WaitLive bool
	// LogLevel is Envoy's log level; empty means "warn".
	LogLevel string
}

// Envoy is an Envoy process with a bootstrap of our own (the ingress).
// Stop and Start restart it with the same admin port and bootstrap.
type Envoy struct {
	opts EnvoyOptions
	bin  string

	restartable
}

// StartEnvoy writes the bootstrap and starts Envoy.
func StartEnvoy(ctx context.Context, opts EnvoyOptions) (*Envoy, error) {
	if opts.Name == "" || opts.Dir == "" || opts.Bootstrap == nil {
		return nil, errors.New("start envoy: Name, Dir and Bootstrap are required")
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	bin, err := Binary("envoy")
	if err != nil {
		return nil, fmt.Errorf("start envoy %s: %w", opts.Name, err)
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, fmt.Errorf("start envoy %s: %w", opts.Name, err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("start envoy %s: %w", opts.Name, err)
	}
	if err := FreePorts(&opts.AdminPort); err != nil {
		return nil, fmt.Errorf("start envoy %s: %w", opts.Name, err)
	}
	bootstrap, err := opts.Bootstrap(opts.AdminPort)
	if err != nil {
		return nil, fmt.Errorf("start envoy %s: %w", opts.Name, err)
	}
	if err := os.WriteFile(filepath.Join(opts.Dir, opts.Name+"-bootstrap.yaml"), bootstrap, 0o644); err != nil {
		return nil, fmt.Errorf("start envoy %s: %w", opts.Name, err)
	}
	e := &Envoy{opts: opts, bin: bin}
	if err := e.Start(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// AdminURL is the base URL of the admin interface.
func (e *Envoy) AdminURL() string { return "http://" + Loopback(e.opts.AdminPort) }

// LogPath is the file that receives Envoy's output.
func (e *Envoy) LogPath() string { return filepath.Join(e.opts.Dir, e.opts.Name+".log") }

// Start starts Envoy after Stop; it does nothing while it runs.
func (e *Envoy) Start(ctx context.Context) error {
	ready := func(ctx context.Context) error {
		if e.opts.WaitLive {
			return envoyLive(ctx, e.AdminURL()+"/ready")
		}
		return adminAnswers(ctx, e.AdminURL()+"/server_info")
	}
	return e.startOnce(ctx, func(ctx context.Context) (*Process, error) {
		return launchReady(ctx, Command{
			Name: "envoy " + e.opts.Name,
			Path: e.bin,
			Args: []string{
				"-c", filepath.Join(e.opts.Dir, e.opts.Name+"-bootstrap.yaml"),
				// Distinct shared-memory ids for Envoys on one machine.
				"--base-id", strconv.Itoa(e.opts.AdminPort),
				"--concurrency", "1",
				"--drain-time-s", "1",
				"-l", e.opts.LogLevel,
			},
			Dir:     e.opts.Dir,
			LogPath: e.LogPath(),
		}, ready)
	})
}

// adminAnswers succeeds once the admin interface answers at all.
func adminAnswers(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("envoy admin %s: %d", url, resp.StatusCode)
	}
	return nil
}
