package system_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/edge/controlplane"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// system is everything the package started, and how to stop it.
type system struct {
	dir  string // private directory: data, logs, keys, binaries
	root string // the repository checkout under test

	postgres  *localenv.Postgres
	rabbitMQ  *localenv.RabbitMQ
	redis     *localenv.Redis
	consul    *localenv.Consul
	consulAPI *api.Client
	cp        *controlplane.ControlPlane
	rateLimit *localenv.RateLimit
	ingress   *localenv.Envoy

	// ingressURL is where clients call the system.
	ingressURL string
	// edgeURL is the edge's own loopback listener, read only for its
	// metrics (clients never call it).
	edgeURL string
	// adminEmail and adminPassword are the bootstrap admin's credentials.
	adminEmail, adminPassword string
	// admin, alice and bob are logged in once for the whole run: the
	// ingress allows only 10 logins a minute per client address.
	admin, alice, bob account

	mu    sync.Mutex
	stops []stopStep // in start order; stopped in reverse
	pids  []int      // every process started, checked after the stop
}

// stepStopTimeout bounds the graceful stop of one step.
const stepStopTimeout = 15 * time.Second

// stopStep undoes one start.
type stopStep struct {
	name string
	stop func(context.Context) error
}

func (s *system) onStop(name string, stop func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops = append(s.stops, stopStep{name, stop})
}

func (s *system) started(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pids = append(s.pids, pid)
}

// stop stops everything in reverse start order, then checks that no
// process the run started is left, and removes the directory if asked.
func (s *system) stop(ctx context.Context, removeDir bool) error {
	s.mu.Lock()
	steps := s.stops
	s.stops = nil
	s.mu.Unlock()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		// Each step gets a bounded share, so one that hangs leaves the
		// others their graceful stop.
		stepCtx, cancel := context.WithTimeout(ctx, stepStopTimeout)
		err := steps[i].stop(stepCtx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", steps[i].name, err))
		}
	}
	if left := s.leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("processes still running after the stop: %s", strings.Join(left, "; ")))
	}
	if removeDir && len(errs) == 0 {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}

// leftovers describes every started process that still runs (zombies do
// not run anything and do not count).
func (s *system) leftovers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, pid := range s.pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		stat := string(b)
		if i := strings.LastIndexByte(stat, ')'); i >= 0 && strings.HasPrefix(strings.TrimSpace(stat[i+1:]), "Z") {
			continue
		}
		out = append(out, strings.TrimSpace(stat))
	}
	return out
}

func (s *system) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// randomHex returns n random bytes as hex, for unique names and secrets.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
