package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portico-mesh/portico/mesh/entries"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

type adminCredentials struct {
	Email    string
	Password string
}

type supervisor struct {
	l   layout
	log *slog.Logger
	// life ends when the supervisor is told to stop; restart loops
	// (keepers) run until then and belong to wg.
	life context.Context
	wg   sync.WaitGroup
	// stack builds the topology and owns every process: it stops them
	// in reverse start order.
	stack *stack.Stack

	// Set by the components as they start, for the ones after them.
	pgURL  string
	consul *localenv.Consul

	mu    sync.Mutex
	state stackState
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

	st, err := stack.New(stack.Config{
		Root: l.Root, Dir: l.Run, Environ: os.Environ(), StepStopTimeout: 30 * time.Second, Log: log,
	})
	if err != nil {
		return err
	}
	s := &supervisor{l: l, log: log, life: ctx, stack: st, state: stackState{Phase: phaseStarting}}
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
	// Services (each deregisters from Consul, drains, and then its
	// sidecar stops) stop before Consul and the servers they use.
	if err := st.Stop(context.Background()); err != nil {
		log.Error("stop", "error", err)
	}
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
	pg, err := s.stack.StartPostgres(ctx, localenv.PostgresOptions{Dir: filepath.Join(s.l.Data, "postgres"), Port: postgresPort})
	if err != nil {
		return err
	}
	s.pgURL = pg.URL("postgres")
	s.track(componentState{Name: "postgres", URL: s.pgURL, Log: filepath.Join(s.l.Data, "postgres")})
	return nil
}

func (s *supervisor) startRabbitMQ(ctx context.Context) error {
	rmq, err := s.stack.StartRabbitMQ(ctx, localenv.RabbitMQOptions{
		Dir: filepath.Join(s.l.Data, "rabbitmq"), Port: rabbitMQPort, ManagementPort: rabbitMQManagement,
	})
	if err != nil {
		return err
	}
	s.track(componentState{Name: "rabbitmq", URL: rmq.ManagementURL(), Log: filepath.Join(s.l.Data, "rabbitmq", "rabbitmq.log")})
	return nil
}

func (s *supervisor) startRedis(ctx context.Context) error {
	redis, err := s.stack.StartRedis(ctx, localenv.RedisOptions{Dir: filepath.Join(s.l.Data, "redis"), Port: redisPort})
	if err != nil {
		return err
	}
	s.track(componentState{Name: "redis", URL: "redis://" + redis.Addr(), Log: filepath.Join(s.l.Data, "redis", "redis.log")})
	return nil
}

// startConsul starts a dev agent: Connect with its built-in CA, state in
// memory (the services register again at every `make up`), the API and UI
// on 127.0.0.1:8500 and every other port private.
func (s *supervisor) startConsul(ctx context.Context) error {
	c, err := s.stack.StartConsul(ctx, localenv.ConsulOptions{
		Dir: filepath.Join(s.l.Data, "consul"), HTTPPort: consulHTTPPort, Node: "portico-dev",
	})
	if err != nil {
		return err
	}
	s.consul = c
	// A restarted dev agent has forgotten everything: the mesh entries are
	// written again here, the services register again by themselves, and
	// the sidecars reconnect to the same ports.
	s.keep("consul", consulProcess{c, s.stack.MeshEntryOptions()})
	s.track(componentState{
		Name: "consul", PID: c.Pid(), URL: c.HTTPURL() + "/ui/", Health: c.HTTPURL() + "/v1/status/leader", Log: c.LogPath(),
	})
	return nil
}

// consulProcess restarts the agent with the mesh entries applied.
type consulProcess struct {
	*localenv.Consul
	entryOptions []entries.Option
}

func (p consulProcess) Done() <-chan struct{} { return doneOrClosed(p.Consul.Done()) }

func (p consulProcess) Start(ctx context.Context) error {
	if err := p.Consul.Start(ctx); err != nil {
		return err
	}
	return stack.ApplyMeshEntries(ctx, p.Consul, p.entryOptions...)
}

// applyMeshConfig writes mesh/entries (defaults, resolvers, intentions with
// default deny) before any sidecar starts, so that no request ever passes
// without its intention.
func (s *supervisor) applyMeshConfig(ctx context.Context) error {
	return stack.ApplyMeshEntries(ctx, s.consul, s.stack.MeshEntryOptions()...)
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
	count := map[string]int{}
	for _, svc := range specs {
		if _, err := stack.CreateDatabase(ctx, s.pgURL, svc.Database); err != nil {
			return err
		}
		if _, err := s.startInstance(ctx, svc); err != nil {
			return err
		}
		count[svc.Service]++
	}
	for service, n := range count {
		if err := stack.WaitPassing(ctx, client, service, n); err != nil {
			return err
		}
	}
	return nil
}

// instanceConfig is the stack's view of a service spec.
func (s *supervisor) instanceConfig(svc serviceSpec) stack.InstanceConfig {
	env := svc.Env
	if svc.Database != "" {
		env = append([]string{"DATABASE_URL=" + databaseURL(svc.Database)}, env...)
	}
	return stack.InstanceConfig{
		ID: svc.ID, Binary: filepath.Join(s.l.Bin, svc.Binary), Consul: s.consul, AMQPURL: amqpURL(),
		Port: svc.Port, SidecarPort: svc.SidecarPort, AdminPort: svc.AdminPort,
		CheckInterval: checkInterval, LogLevel: "info", Env: env,
		LogPath: s.l.logFile(svc.ID), SidecarDir: s.l.Logs, WorkDir: s.l.Root,
	}
}

// startInstance starts a service instance and its sidecar, each kept
// running. On the way down the instance stops first (it deregisters and
// drains while its sidecar still forwards), then the sidecar.
func (s *supervisor) startInstance(ctx context.Context, svc serviceSpec) (*stack.Instance, error) {
	inst, err := s.stack.StartInstance(ctx, s.instanceConfig(svc))
	if err != nil {
		return nil, err
	}
	if _, err := s.stack.StartSidecar(ctx, inst); err != nil {
		return nil, err
	}
	s.keepInstance(svc, inst)
	return inst, nil
}

// keepInstance keeps an instance and its sidecar running and shows both.
func (s *supervisor) keepInstance(svc serviceSpec, inst *stack.Instance) {
	s.keep(svc.ID, inst)
	s.track(componentState{
		Name: svc.ID, PID: inst.Pid(), URL: inst.URL(), Health: inst.URL() + "/readyz", Log: inst.LogPath(),
	})
	sc := inst.Sidecar()
	s.keep(svc.ID+"-envoy", sidecarProcess{sc})
	s.track(componentState{
		Name: svc.ID + "-envoy", PID: sc.Pid(), URL: sc.AdminURL(), Health: sc.AdminURL() + "/ready", Log: sc.LogPath(),
	})
}

// restartable is a process the supervisor keeps running.
type restartable interface {
	// Done is closed when the current run exits.
	Done() <-chan struct{}
	Pid() int
	// Start starts it again after it exited.
	Start(ctx context.Context) error
}

// keep restarts p whenever it exits, after a growing pause, until the
// stack stops. The restart loop belongs to s.wg; the stack ends it before
// it stops p (it stops what started later first), so it cannot start p
// again behind the stop's back.
func (s *supervisor) keep(name string, p restartable) {
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
	s.stack.OnStop(name+" restarts", func(context.Context) error {
		stopKeeper()
		<-keeperDone
		return nil
	})
}

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

// track records a component for `status`.
func (s *supervisor) track(c componentState) {
	s.mu.Lock()
	s.state.Components = append(s.state.Components, c)
	s.mu.Unlock()
	s.publish()
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
