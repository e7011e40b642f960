package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/portico-mesh/portico/mesh/entries"
	"github.com/portico-mesh/portico/mesh/localenv"
)

type adminCredentials struct {
	Email    string
	Password string
}

// stopper is anything the supervisor stops on the way down.
type stopper struct {
	name string
	stop func(context.Context) error
}

type supervisor struct {
	l   layout
	log *slog.Logger
	// life ends when the supervisor is told to stop; restart loops
	// (keepers) run until then and belong to wg.
	life context.Context
	wg   sync.WaitGroup

	// Set by the components as they start, for the ones after them.
	pgURL  string
	consul *localenv.Consul

	mu    sync.Mutex
	state stackState
	stops []stopper // in start order; stopped in reverse
}

// supervise runs in the detached process: it starts the stack, reports
// readiness through the state file, and stops everything when signalled.
func supervise(ctx context.Context, l layout) error {
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	if pid := supervisorPID(l); pid != 0 && pid != os.Getpid() {
		return fmt.Errorf("another supervisor (pid %d) is running", pid)
	}
	if err := os.WriteFile(l.PIDFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(l.PIDFile)

	s := &supervisor{l: l, log: log, life: ctx, state: stackState{Phase: phaseStarting}}
	s.publish()
	startErr := s.start(ctx)
	if startErr != nil {
		log.Error("start failed", "error", startErr)
		s.setPhase(phaseFailed, startErr.Error())
	} else {
		s.setPhase(phaseReady, "")
		log.Info("stack ready")
		<-ctx.Done()
	}
	s.setPhase(phaseStopping, "")
	s.stopAll()
	s.wg.Wait()
	_ = os.Remove(l.stateFile())
	log.Info("stack stopped")
	return startErr
}

func (s *supervisor) start(ctx context.Context) error {
	startCtx, cancel := context.WithTimeout(ctx, upTimeout)
	defer cancel()
	for _, c := range components() {
		begin := time.Now()
		if err := c.start(s, startCtx); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		s.log.Info("started", "component", c.name, "took", time.Since(begin).Round(time.Millisecond).String())
	}
	return nil
}

func (s *supervisor) startPostgres(ctx context.Context) error {
	pg, err := localenv.StartPostgres(ctx, localenv.PostgresOptions{Dir: filepath.Join(s.l.Data, "postgres"), Port: postgresPort})
	if err != nil {
		return err
	}
	s.pgURL = pg.URL("postgres")
	s.track("postgres", pg.Stop, componentState{Name: "postgres", URL: s.pgURL, Log: filepath.Join(s.l.Data, "postgres")})
	return nil
}

func (s *supervisor) startRabbitMQ(ctx context.Context) error {
	rmq, err := localenv.StartRabbitMQ(ctx, localenv.RabbitMQOptions{
		Dir: filepath.Join(s.l.Data, "rabbitmq"), Port: rabbitMQPort, ManagementPort: rabbitMQManagement,
	})
	if err != nil {
		return err
	}
	s.track("rabbitmq", rmq.Close, componentState{Name: "rabbitmq", URL: rmq.ManagementURL(), Log: filepath.Join(s.l.Data, "rabbitmq", "rabbitmq.log")})
	return nil
}

func (s *supervisor) startRedis(ctx context.Context) error {
	redis, err := localenv.StartRedis(ctx, localenv.RedisOptions{Dir: filepath.Join(s.l.Data, "redis"), Port: redisPort})
	if err != nil {
		return err
	}
	s.track("redis", redis.Stop, componentState{Name: "redis", URL: "redis://" + redis.Addr(), Log: filepath.Join(s.l.Data, "redis", "redis.log")})
	return nil
}

// startConsul starts a dev agent: Connect with its built-in CA, state in
// memory (the services register again at every `make up`), the API and UI
// on 127.0.0.1:8500 and every other port private.
func (s *supervisor) startConsul(ctx context.Context) error {
	c, err := localenv.StartConsul(ctx, localenv.ConsulOptions{
		Dir: filepath.Join(s.l.Data, "consul"), HTTPPort: consulHTTPPort, Node: "portico-dev",
	})
	if err != nil {
		return err
	}
	s.consul = c
	// A restarted dev agent has forgotten everything: the mesh entries are
	// written again here, the services register again by themselves, and
	// the sidecars reconnect to the same ports.
	stop := s.keep("consul", consulProcess{c})
	s.track("consul", stop, componentState{
		Name: "consul", PID: c.Pid(), URL: c.HTTPURL() + "/ui/", Health: c.HTTPURL() + "/v1/status/leader", Log: c.LogPath(),
	})
	return nil
}

// consulProcess restarts the agent with the mesh entries applied.
type consulProcess struct{ *localenv.Consul }

func (p consulProcess) Done() <-chan struct{} { return doneOrClosed(p.Consul.Done()) }

func (p consulProcess) Start(ctx context.Context) error {
	if err := p.Consul.Start(ctx); err != nil {
		return err
	}
	client, err := p.Client()
	if err != nil {
		return err
	}
	return entries.Apply(ctx, client)
}

// applyMeshConfig writes mesh/entries (defaults, resolvers, intentions with
// default deny) before any sidecar starts, so that no request ever passes
// without its intention.
func (s *supervisor) applyMeshConfig(ctx context.Context) error {
	client, err := s.consul.Client()
	if err != nil {
		return err
	}
	return entries.Apply(ctx, client)
}

// startServices starts every service instance and its sidecar, then waits
// until Consul reports all of them passing.
func (s *supervisor) startServices(ctx context.Context) error {
	admin, err := s.adminCredentials()
	if err != nil {
		return err
	}
	client, err := s.consul.Client()
	if err != nil {
		return err
	}
	specs := services(s.l, admin)
	for _, svc := range specs {
		if err := createDatabase(ctx, s.pgURL, svc.Database); err != nil {
			return err
		}
		if err := s.startInstance(ctx, client, svc); err != nil {
			return err
		}
	}
	for _, svc := range specs {
		for _, id := range []string{svc.ID, svc.sidecarID()} {
			if err := waitPassing(ctx, client, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// startInstance starts a service instance, waits for its registration and
// starts its sidecar. On the way down the instance stops first (it
// deregisters and drains while its sidecar still forwards), then the
// sidecar.
func (s *supervisor) startInstance(ctx context.Context, client *api.Client, svc serviceSpec) error {
	proc, err := s.startService(ctx, svc)
	if err != nil {
		return err
	}
	stopService := s.keep(svc.ID, proc)
	s.track(svc.ID, stopService, componentState{
		Name: svc.ID, PID: proc.Pid(), URL: svc.URL(), Health: svc.URL() + "/readyz", Log: proc.cmd.LogPath,
	})
	// The sidecar serves the proxy the service registered.
	if err := waitRegistered(ctx, client, svc.sidecarID()); err != nil {
		return fmt.Errorf("%s: %w", svc.ID, err)
	}
	sc, err := localenv.StartSidecar(ctx, localenv.SidecarOptions{
		Consul: s.consul, SidecarFor: svc.ID, AdminPort: svc.AdminPort, Dir: s.l.Logs, LogLevel: "warn",
	})
	if err != nil {
		return fmt.Errorf("sidecar of %s: %w", svc.ID, err)
	}
	stopSidecar := s.keep(svc.ID+"-envoy", sidecarProcess{sc})
	s.replaceStop(svc.ID, func(ctx context.Context) error {
		return errors.Join(stopService(ctx), stopSidecar(ctx))
	})
	s.track(svc.ID+"-envoy", nil, componentState{
		Name: svc.ID + "-envoy", PID: sc.Pid(), URL: svc.adminURL(), Health: svc.adminURL() + "/ready", Log: sc.LogPath(),
	})
	return nil
}

// startService runs one service instance, registered in Consul, and
// returns once it is ready.
func (s *supervisor) startService(ctx context.Context, svc serviceSpec) (*managedProcess, error) {
	env := append(os.Environ(),
		"HTTP_ADDR="+svc.Addr,
		"DATABASE_URL="+databaseURL(svc.Database),
		"AMQP_URL="+amqpURL(),
		"LOG_LEVEL=info",
		"CONSUL_HTTP_ADDR="+s.consul.HTTPAddr(),
		"SERVICE_ID="+svc.ID,
		"SIDECAR_PORT="+strconv.Itoa(svc.SidecarPort),
		"CONSUL_CHECK_INTERVAL="+checkInterval,
	)
	env = append(env, svc.Env...)
	proc := &managedProcess{cmd: localenv.Command{
		Name: svc.ID, Path: filepath.Join(s.l.Bin, svc.Binary), Env: env, Dir: s.l.Root,
		LogPath: s.l.logFile(svc.ID),
	}}
	if err := proc.Start(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", svc.ID, err)
	}
	if err := waitHTTPReady(ctx, proc.Done(), proc.Err, svc.URL()+"/readyz"); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		_ = proc.Stop(stopCtx)
		return nil, fmt.Errorf("%s: %w (log: %s)", svc.ID, err, rel(s.l, proc.cmd.LogPath))
	}
	return proc, nil
}

// restartable is a process the supervisor keeps running.
type restartable interface {
	// Done is closed when the current run exits.
	Done() <-chan struct{}
	Pid() int
	// Start starts it again after it exited.
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// keep restarts p whenever it exits, after a growing pause, and returns
// the function that stops both. The restart loop belongs to s.wg and has
// ended before p is stopped, so it cannot start p again behind Stop's back.
func (s *supervisor) keep(name string, p restartable) (stop func(context.Context) error) {
	keeperCtx, stopKeeper := context.WithCancel(context.WithoutCancel(s.life))
	keeperDone := make(chan struct{})
	s.wg.Go(func() {
		defer close(keeperDone)
		restarts := 0
		for {
			select {
			case <-keeperCtx.Done():
				return
			case <-p.Done():
			}
			restarts++
			delay := min(time.Duration(restarts)*time.Second, 30*time.Second)
			s.log.Warn("process exited; restarting", "component", name, "in", delay.String())
			select {
			case <-keeperCtx.Done():
				return
			case <-time.After(delay):
			}
			startCtx, cancel := context.WithTimeout(keeperCtx, upTimeout)
			err := p.Start(startCtx)
			cancel()
			if err != nil {
				s.log.Error("restart failed", "component", name, "error", err)
				continue
			}
			s.updatePID(name, p.Pid())
		}
	})
	return func(stopCtx context.Context) error {
		stopKeeper()
		<-keeperDone
		return p.Stop(stopCtx)
	}
}

// managedProcess is a service process that can be started again with the
// same command.
type managedProcess struct {
	cmd localenv.Command

	mu  sync.Mutex
	cur *localenv.Process
}

func (m *managedProcess) Start(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := localenv.StartProcess(m.cmd)
	if err != nil {
		return err
	}
	m.cur = p
	return nil
}

func (m *managedProcess) current() *localenv.Process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

func (m *managedProcess) Done() <-chan struct{}          { return m.current().Done() }
func (m *managedProcess) Pid() int                       { return m.current().Pid() }
func (m *managedProcess) Err() error                     { return m.current().Err() }
func (m *managedProcess) Stop(ctx context.Context) error { return m.current().Stop(ctx) }

// sidecarProcess adapts a Sidecar to restartable.
type sidecarProcess struct{ *localenv.Sidecar }

func (p sidecarProcess) Done() <-chan struct{} { return doneOrClosed(p.Sidecar.Done()) }

// doneOrClosed turns the nil Done of a stopped process into a closed
// channel, so that a keeper starts it again.
func doneOrClosed(d <-chan struct{}) <-chan struct{} {
	if d != nil {
		return d
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

func waitHTTPReady(ctx context.Context, exited <-chan struct{}, exitErr func() error, url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-exited:
			return fmt.Errorf("exited before becoming ready: %w", exitErr())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitRegistered waits until the local agent knows service id.
func waitRegistered(ctx context.Context, client *api.Client, id string) error {
	return poll(ctx, "registration of "+id, func(ctx context.Context) error {
		_, _, err := client.Agent().Service(id, (&api.QueryOptions{}).WithContext(ctx))
		return err
	})
}

// waitPassing waits until every check of service id passes.
func waitPassing(ctx context.Context, client *api.Client, id string) error {
	return poll(ctx, id+" passing its checks", func(ctx context.Context) error {
		status, _, err := client.Agent().AgentHealthServiceByIDOpts(id, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		if status != api.HealthPassing {
			return fmt.Errorf("%s is %s", id, status)
		}
		return nil
	})
}

// poll calls f every 200 ms until it succeeds or ctx ends.
func poll(ctx context.Context, what string, f func(context.Context) error) error {
	if err := localenv.Poll(ctx, 200*time.Millisecond, f); err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// adminCredentials returns the bootstrap admin of this checkout, generating
// a random password once and keeping it in .run/devstack/admin.env.
func (s *supervisor) adminCredentials() (adminCredentials, error) {
	creds := adminCredentials{Email: "admin@portico.local"}
	if b, err := os.ReadFile(s.l.adminFile()); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PORTICO_ADMIN_PASSWORD="); ok {
				creds.Password = v
			}
		}
		if creds.Password != "" {
			return creds, nil
		}
	}
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		return creds, err
	}
	creds.Password = base64.RawURLEncoding.EncodeToString(raw)
	body := fmt.Sprintf("PORTICO_ADMIN_EMAIL=%s\nPORTICO_ADMIN_PASSWORD=%s\n", creds.Email, creds.Password)
	if err := os.WriteFile(s.l.adminFile(), []byte(body), 0o600); err != nil {
		return creds, err
	}
	return creds, nil
}

// track records a component for `status` and, unless stop is nil, for
// stopAll.
func (s *supervisor) track(name string, stop func(context.Context) error, c componentState) {
	s.mu.Lock()
	if stop != nil {
		s.stops = append(s.stops, stopper{name: name, stop: stop})
	}
	s.state.Components = append(s.state.Components, c)
	s.mu.Unlock()
	s.publish()
}

// replaceStop changes how the tracked component name is stopped.
func (s *supervisor) replaceStop(name string, stop func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.stops {
		if s.stops[i].name == name {
			s.stops[i].stop = stop
		}
	}
}

func (s *supervisor) updatePID(name string, pid int) {
	s.mu.Lock()
	for i := range s.state.Components {
		if s.state.Components[i].Name == name {
			s.state.Components[i].PID = pid
		}
	}
	s.mu.Unlock()
	s.publish()
}

func (s *supervisor) setPhase(phase, errText string) {
	s.mu.Lock()
	s.state.Phase, s.state.Error = phase, errText
	s.mu.Unlock()
	s.publish()
}

func (s *supervisor) publish() {
	s.mu.Lock()
	st := s.state
	st.Components = append([]componentState(nil), s.state.Components...)
	s.mu.Unlock()
	if err := writeState(s.l, st); err != nil {
		s.log.Error("write state", "error", err)
	}
}

// stopAll stops components in reverse start order: services (each
// deregisters from Consul, drains, and then its sidecar stops) before
// Consul and the servers they use.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	stops := append([]stopper(nil), s.stops...)
	s.mu.Unlock()
	var errs []error
	for i := len(stops) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := stops[i].stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", stops[i].name, err))
		}
		cancel()
		s.log.Info("stopped", "component", stops[i].name)
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Error("stop", "error", err)
	}
}
