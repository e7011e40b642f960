package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// pollEvery paces the waits of the steps.
const pollEvery = 50 * time.Millisecond

// InstanceConfig is one service instance: a Portico binary that registers
// itself and its sidecar in Consul.
type InstanceConfig struct {
	// ID is SERVICE_ID: the Consul service id, process and log name.
	// Required.
	ID string
	// Binary is the executable (see Build and Binary). Required.
	Binary string
	// Consul is the agent the instance registers with. Required.
	Consul *localenv.Consul
	// AMQPURL is the broker the instance publishes to, if any.
	AMQPURL string
	// Port is the instance's HTTP port on 127.0.0.1, SidecarPort its
	// sidecar's public mTLS listener and AdminPort the sidecar's Envoy
	// admin; zero ports are chosen by the builder.
	Port, SidecarPort, AdminPort int
	// CheckInterval paces the Consul checks of the instance and its
	// sidecar; zero keeps the service's default.
	CheckInterval time.Duration
	// LogLevel is LOG_LEVEL; empty means info.
	LogLevel string
	// Env is added to the stack's environment and the variables above
	// (DATABASE_URL, keys, upstreams...).
	Env []string
	// ReadyBody, when set, must appear in the /readyz body.
	ReadyBody string
	// LogPath receives the output; empty means Path("logs", ID+".log").
	LogPath string
	// SidecarDir holds the sidecar's bootstrap and log; empty means
	// Path("sidecars").
	SidecarDir string
	// WorkDir is the process's working directory; empty means Dir.
	WorkDir string
}

// Instance is a running service instance and, once StartSidecar ran, its
// sidecar. Stop and Start restart the process with the same command.
type Instance struct {
	cfg   InstanceConfig
	cmd   localenv.Command
	stack *Stack
	// ready succeeds once a run serves (and, for a service, registered).
	ready func(context.Context) error

	mu      sync.Mutex
	proc    *localenv.Process
	sidecar *localenv.Sidecar
}

// ID is the instance's service id.
func (i *Instance) ID() string { return i.cfg.ID }

// SidecarID is the id its sidecar proxy registers under.
func (i *Instance) SidecarID() string { return i.cfg.ID + "-sidecar-proxy" }

// Port is the instance's own HTTP port.
func (i *Instance) Port() int { return i.cfg.Port }

// SidecarPort is the sidecar's public listener.
func (i *Instance) SidecarPort() int { return i.cfg.SidecarPort }

// URL is the instance's own base URL (not through the mesh).
func (i *Instance) URL() string { return "http://" + localenv.Loopback(i.cfg.Port) }

// LogPath is the file of the instance's output.
func (i *Instance) LogPath() string { return i.cfg.LogPath }

// Sidecar is the instance's sidecar, or nil before StartSidecar.
func (i *Instance) Sidecar() *localenv.Sidecar {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.sidecar
}

// Process is the current run of the instance.
func (i *Instance) Process() *localenv.Process {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.proc
}

// Pid is the current run's process id.
func (i *Instance) Pid() int { return i.Process().Pid() }

// Done is closed when the current run exits.
func (i *Instance) Done() <-chan struct{} { return i.Process().Done() }

// Stop stops the current run (the instance deregisters and drains).
func (i *Instance) Stop(ctx context.Context) error { return i.Process().Stop(ctx) }

// Start runs the instance again after it exited or was stopped, and
// waits as StartInstance does. It does nothing while a run is alive.
func (i *Instance) Start(ctx context.Context) error {
	i.mu.Lock()
	cur := i.proc
	i.mu.Unlock()
	if cur != nil {
		select {
		case <-cur.Done():
		default:
			return nil
		}
	}
	p, err := localenv.StartProcess(i.cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", i.cfg.ID, err)
	}
	i.stack.Started(p.Pid())
	i.mu.Lock()
	i.proc = p
	i.mu.Unlock()
	err = localenv.Poll(ctx, pollEvery, func(ctx context.Context) error {
		select {
		case <-p.Done():
			return localenv.StopPolling(fmt.Errorf("exited before becoming ready: %w", p.Err()))
		default:
		}
		return i.ready(ctx)
	})
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		return errors.Join(fmt.Errorf("start %s: %w (log %s)\n%s", i.cfg.ID, err, p.LogPath(), p.LogTail(30)), p.Stop(stopCtx))
	}
	return nil
}

// StartInstance starts one service instance and returns once it answers
// /readyz and has registered itself with its sidecar.
func (s *Stack) StartInstance(ctx context.Context, cfg InstanceConfig) (*Instance, error) {
	if cfg.ID == "" || cfg.Binary == "" || cfg.Consul == nil {
		return nil, errors.New("start instance: ID, Binary and Consul are required")
	}
	if err := localenv.FreePorts(&cfg.Port, &cfg.SidecarPort, &cfg.AdminPort); err != nil {
		return nil, err
	}
	if cfg.LogPath == "" {
		cfg.LogPath = s.Path("logs", cfg.ID+".log")
	}
	if cfg.SidecarDir == "" {
		cfg.SidecarDir = s.Path("sidecars")
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = s.cfg.Dir
	}
	if err := os.MkdirAll(filepath.Dir(cfg.LogPath), 0o750); err != nil {
		return nil, err
	}
	env := []string{
		"HTTP_ADDR=" + localenv.Loopback(cfg.Port),
		"LOG_LEVEL=" + cfg.LogLevel,
		"CONSUL_HTTP_ADDR=" + cfg.Consul.HTTPAddr(),
		"SERVICE_ID=" + cfg.ID,
		"SIDECAR_PORT=" + strconv.Itoa(cfg.SidecarPort),
	}
	if cfg.AMQPURL != "" {
		env = append(env, "AMQP_URL="+cfg.AMQPURL)
	}
	if cfg.CheckInterval > 0 {
		env = append(env, "CONSUL_CHECK_INTERVAL="+cfg.CheckInterval.String())
	}
	client, err := cfg.Consul.Client()
	if err != nil {
		return nil, err
	}
	inst := &Instance{cfg: cfg, stack: s, cmd: localenv.Command{
		Name: cfg.ID, Path: cfg.Binary, Env: s.environ(append(env, cfg.Env...)...), Dir: cfg.WorkDir,
		LogPath: cfg.LogPath,
	}}
	inst.ready = func(ctx context.Context) error {
		if err := ExpectOK(ctx, inst.URL()+"/readyz", cfg.ReadyBody); err != nil {
			return err
		}
		// Its sidecar's registration is what StartSidecar serves.
		_, _, err := client.Agent().Service(inst.SidecarID(), (&api.QueryOptions{}).WithContext(ctx))
		return err
	}
	if err := inst.Start(ctx); err != nil {
		return nil, err
	}
	// The instance stops first (it deregisters and drains while its
	// sidecar still forwards), then its sidecar.
	s.OnStop(cfg.ID, func(ctx context.Context) error {
		err := inst.Process().Stop(ctx)
		if sc := inst.Sidecar(); sc != nil {
			err = errors.Join(err, sc.Stop(ctx))
		}
		return err
	})
	return inst, nil
}

// StartSidecar starts inst's Envoy sidecar and returns once it is LIVE.
// It stops right after the instance, which drains through it first.
func (s *Stack) StartSidecar(ctx context.Context, inst *Instance) (*localenv.Sidecar, error) {
	sc, err := localenv.StartSidecar(ctx, localenv.SidecarOptions{
		Consul: inst.cfg.Consul, SidecarFor: inst.cfg.ID, AdminPort: inst.cfg.AdminPort, Dir: inst.cfg.SidecarDir,
	})
	if err != nil {
		return nil, fmt.Errorf("sidecar of %s: %w", inst.cfg.ID, err)
	}
	s.Started(sc.Pid())
	inst.mu.Lock()
	inst.sidecar = sc
	inst.mu.Unlock()
	return sc, nil
}

// StartProxy starts an Envoy sidecar for any registration (a test
// client's, say); an empty opts.Dir is Path("sidecars").
func (s *Stack) StartProxy(ctx context.Context, opts localenv.SidecarOptions) (*localenv.Sidecar, error) {
	if opts.Dir == "" {
		opts.Dir = s.Path("sidecars")
	}
	sc, err := localenv.StartSidecar(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("sidecar for %s%s: %w", opts.SidecarFor, opts.ProxyID, err)
	}
	s.Started(sc.Pid())
	s.OnStop("sidecar of "+opts.SidecarFor+opts.ProxyID, sc.Stop)
	return sc, nil
}

// StartInstances starts the instances one after another (two instances
// of a service take turns on their database's migration lock), then their
// sidecars together (each mostly waits for its first xDS round), and
// returns once Consul lists every instance's sidecar passing.
func (s *Stack) StartInstances(ctx context.Context, cfgs ...InstanceConfig) ([]*Instance, error) {
	var out []*Instance
	for _, cfg := range cfgs {
		inst, err := s.StartInstance(ctx, cfg)
		if err != nil {
			return out, err
		}
		out = append(out, inst)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(out))
	for i, inst := range out {
		wg.Go(func() { _, errs[i] = s.StartSidecar(ctx, inst) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	if len(out) == 0 {
		return out, nil
	}
	client, err := out[0].cfg.Consul.Client()
	if err != nil {
		return out, err
	}
	count := map[string]int{}
	for _, inst := range out {
		svc, _, err := client.Agent().Service(inst.cfg.ID, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return out, err
		}
		count[svc.Service]++
	}
	for service, n := range count {
		if err := WaitPassing(ctx, client, service, n); err != nil {
			return out, err
		}
	}
	return out, nil
}

// WaitPassing waits until Consul lists exactly n passing sidecars of
// service: the endpoints its callers route to (after a stop or a crash,
// waiting for fewer is how a caller sees an instance leave).
func WaitPassing(ctx context.Context, client *api.Client, service string, n int) error {
	err := localenv.Poll(ctx, pollEvery, func(ctx context.Context) error {
		got, _, err := client.Health().Connect(service, "", true, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		if len(got) != n {
			return fmt.Errorf("%d of %d %s endpoints passing", len(got), n, service)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s passing: %w", service, err)
	}
	return nil
}

// ExpectOK GETs url and wants 200 with want in the body.
func ExpectOK(ctx context.Context, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
		return fmt.Errorf("GET %s: %d %.200s", url, resp.StatusCode, b)
	}
	return nil
}

// WaitOK polls ExpectOK until it passes or ctx ends.
func WaitOK(ctx context.Context, url, want string) error {
	if err := localenv.Poll(ctx, pollEvery, func(ctx context.Context) error { return ExpectOK(ctx, url, want) }); err != nil {
		return fmt.Errorf("waiting for %s: %w", url, err)
	}
	return nil
}
