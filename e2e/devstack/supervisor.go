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

	"github.com/jackc/pgx/v5"

	"github.com/portico-mesh/portico/e2e/localenv"
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
	l     layout
	log   *slog.Logger
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

	s := &supervisor{l: l, log: log, state: stackState{Phase: phaseStarting}}
	s.publish()
	var wg sync.WaitGroup
	startErr := s.start(ctx, &wg)
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
	wg.Wait()
	_ = os.Remove(l.stateFile())
	log.Info("stack stopped")
	return startErr
}

func (s *supervisor) start(ctx context.Context, wg *sync.WaitGroup) error {
	startCtx, cancel := context.WithTimeout(ctx, upTimeout)
	defer cancel()

	pg, err := localenv.StartPostgres(startCtx, localenv.PostgresOptions{Dir: filepath.Join(s.l.Data, "postgres"), Port: postgresPort})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.track("postgres", pg.Stop, componentState{Name: "postgres", URL: pg.URL("postgres"), Log: filepath.Join(s.l.Data, "postgres")})

	rmq, err := localenv.StartRabbitMQ(startCtx, localenv.RabbitMQOptions{
		Dir: filepath.Join(s.l.Data, "rabbitmq"), Port: rabbitMQPort, ManagementPort: rabbitMQManagement,
	})
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	s.track("rabbitmq", rmq.Close, componentState{Name: "rabbitmq", URL: rmq.ManagementURL(), Log: filepath.Join(s.l.Data, "rabbitmq", "rabbitmq.log")})

	redis, err := localenv.StartRedis(startCtx, localenv.RedisOptions{Dir: filepath.Join(s.l.Data, "redis"), Port: redisPort})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	s.track("redis", redis.Stop, componentState{Name: "redis", URL: "redis://" + redis.Addr(), Log: filepath.Join(s.l.Data, "redis", "redis.log")})

	admin, err := s.adminCredentials()
	if err != nil {
		return err
	}
	for _, svc := range services(s.l, admin) {
		if err := createDatabase(startCtx, pg.URL("postgres"), svc.Database); err != nil {
			return err
		}
		if err := s.startService(ctx, startCtx, wg, svc); err != nil {
			return err
		}
	}
	return nil
}

// startService runs one service instance and keeps it running: if it
// exits, it is started again after a growing pause, until shutdown.
func (s *supervisor) startService(ctx, startCtx context.Context, wg *sync.WaitGroup, svc serviceSpec) error {
	env := append(os.Environ(),
		"HTTP_ADDR="+svc.Addr,
		"DATABASE_URL="+databaseURL(svc.Database),
		"AMQP_URL="+amqpURL(),
		"LOG_LEVEL=info",
	)
	env = append(env, svc.Env...)
	cmd := localenv.Command{
		Name: svc.Name, Path: filepath.Join(s.l.Bin, svc.Binary), Env: env, Dir: s.l.Root,
		LogPath: s.l.logFile(svc.Name),
	}
	proc, err := localenv.StartProcess(cmd)
	if err != nil {
		return fmt.Errorf("%s: %w", svc.Name, err)
	}
	if err := waitHTTPReady(startCtx, proc, svc.URL()+"/readyz"); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		_ = proc.Stop(stopCtx)
		return fmt.Errorf("%s: %w (log: %s)", svc.Name, err, rel(s.l, proc.LogPath()))
	}

	keeperCtx, stopKeeper := context.WithCancel(context.WithoutCancel(ctx))
	var (
		mu      sync.Mutex
		current = proc
	)
	s.track(svc.Name, func(stopCtx context.Context) error {
		stopKeeper()
		mu.Lock()
		defer mu.Unlock()
		return current.Stop(stopCtx)
	}, componentState{Name: svc.Name, PID: proc.Pid(), URL: svc.URL(), Log: proc.LogPath()})

	wg.Go(func() {
		restarts := 0
		for {
			mu.Lock()
			p := current
			mu.Unlock()
			select {
			case <-keeperCtx.Done():
				return
			case <-p.Done():
			}
			restarts++
			delay := min(time.Duration(restarts)*time.Second, 30*time.Second)
			s.log.Warn("service exited; restarting", "service", svc.Name, "error", fmt.Sprint(p.Err()), "in", delay.String())
			select {
			case <-keeperCtx.Done():
				return
			case <-time.After(delay):
			}
			mu.Lock()
			next, err := localenv.StartProcess(cmd)
			if err == nil {
				current = next
			}
			mu.Unlock()
			if err != nil {
				s.log.Error("restart failed", "service", svc.Name, "error", err)
				continue
			}
			s.updatePID(svc.Name, next.Pid())
		}
	})
	return nil
}

func waitHTTPReady(ctx context.Context, proc *localenv.Process, url string) error {
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
		case <-proc.Done():
			return fmt.Errorf("exited before becoming ready: %w", proc.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
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

func (s *supervisor) track(name string, stop func(context.Context) error, c componentState) {
	s.mu.Lock()
	s.stops = append(s.stops, stopper{name: name, stop: stop})
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

// stopAll stops components in reverse start order: services before the
// servers they use.
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
