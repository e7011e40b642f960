// Package stack builds Portico's topology on loopback from the processes
// of package localenv: the servers (PostgreSQL with a database per
// service, Redis, RabbitMQ, Consul with mesh/entries applied, and Jaeger
// when the stack traces), service instances (a built binary, its Envoy
// sidecar and its registration), the edge, the control plane, the
// rate-limit service and the Envoy ingress.
//
// It is the one builder behind `make up` (mesh/cmd/devstack) and the
// end-to-end suites (e2e/system, e2e/ingress, e2e/mesh, e2e/contract,
// e2e/faults). Each step is a
// method that a caller may use on its own, in the order the topology
// needs; every port is an input, and a zero port is chosen by the
// builder, so the dev stack passes its fixed port plan and the suites let
// the builder pick.
//
// A Stack is the one owner of what its steps started: Stop stops it all
// in reverse start order and reports any process left running. Like
// localenv, the package does not import testing.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// Config configures New.
type Config struct {
	// Root is the repository checkout whose commands are built and run.
	// Required.
	Root string
	// Dir holds everything the stack writes (data, logs, keys, binaries)
	// unless a step is given other paths. Required.
	Dir string
	// Environ is the base environment of every process the stack starts;
	// nil means PATH from this process and HOME=Dir.
	Environ []string
	// StepStopTimeout bounds the graceful stop of one step (15 s if zero),
	// so that one that hangs leaves the others theirs.
	StepStopTimeout time.Duration
	// Log, when set, hears of every stop.
	Log *slog.Logger
}

// Stack is a topology being built, and the owner that stops it.
type Stack struct {
	cfg Config

	mu     sync.Mutex
	stops  []stopStep // in start order; stopped in reverse
	pids   []int      // every process started, checked after Stop
	jaeger *localenv.Jaeger
}

type stopStep struct {
	name string
	stop func(context.Context) error
}

// New returns an empty stack writing under cfg.Dir.
func New(cfg Config) (*Stack, error) {
	if cfg.Root == "" || cfg.Dir == "" {
		return nil, errors.New("stack: Config.Root and Config.Dir are required")
	}
	var err error
	if cfg.Root, err = filepath.Abs(cfg.Root); err != nil {
		return nil, err
	}
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, err
	}
	// PostgreSQL, run as another user when the tests run as root, must
	// enter it.
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if cfg.Environ == nil {
		cfg.Environ = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + cfg.Dir}
	}
	if cfg.StepStopTimeout == 0 {
		cfg.StepStopTimeout = 15 * time.Second
	}
	return &Stack{cfg: cfg}, nil
}

// Root is the repository checkout.
func (s *Stack) Root() string { return s.cfg.Root }

// Dir is the stack's private directory.
func (s *Stack) Dir() string { return s.cfg.Dir }

// Path joins elem under Dir.
func (s *Stack) Path(elem ...string) string {
	return filepath.Join(append([]string{s.cfg.Dir}, elem...)...)
}

// OnStop adds a step to undo at Stop: steps are undone in reverse order
// of OnStop, so what starts later stops earlier.
func (s *Stack) OnStop(name string, stop func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops = append(s.stops, stopStep{name, stop})
}

// Started records a process id, which Stop checks is gone.
func (s *Stack) Started(pid int) {
	if pid == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pids = append(s.pids, pid)
}

// Stop undoes every step in reverse order, each within StepStopTimeout,
// then fails if a process the stack started still runs. It may be
// called after a failed build: it stops whatever did start.
func (s *Stack) Stop(ctx context.Context) error {
	s.mu.Lock()
	steps := s.stops
	s.stops = nil
	s.mu.Unlock()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		stepCtx, cancel := context.WithTimeout(ctx, s.cfg.StepStopTimeout)
		err := steps[i].stop(stepCtx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", steps[i].name, err))
		}
		if s.cfg.Log != nil {
			s.cfg.Log.Info("stopped", "component", steps[i].name)
		}
	}
	if left := s.leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("processes still running after the stop: %s", strings.Join(left, "; ")))
	}
	return errors.Join(errs...)
}

// leftovers describes every started process that still runs (zombies do
// not run anything and do not count).
func (s *Stack) leftovers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, pid := range s.pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		stat := string(b)
		// The state follows the command name in parentheses.
		if i := strings.LastIndexByte(stat, ')'); i >= 0 && strings.HasPrefix(strings.TrimSpace(stat[i+1:]), "Z") {
			continue
		}
		out = append(out, strings.TrimSpace(stat))
	}
	return out
}

// environ is the base environment, the tracing variables when the stack
// traces, plus extra (which may override them).
func (s *Stack) environ(extra ...string) []string {
	return slices.Concat(s.cfg.Environ, s.tracingEnv(), extra)
}
