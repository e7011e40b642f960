package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// stack is the `make up` topology the benchmark measures, reached only
// through devstack's command line and its documented ports.
type stack struct {
	root string // the repository
	// started is true when this run brought the stack up and so must take
	// it down.
	started bool
	// traced runs Jaeger; otherwise devstack leaves the trace backend out.
	traced bool
}

// Documented addresses of `make up` (README "Operations" and "Service mesh").
const (
	ingressURL    = "http://127.0.0.1:5000"
	usersURL      = "http://127.0.0.1:8081"
	edgeUsersURL  = "http://127.0.0.1:19201" // the edge sidecar's upstream to users
	consulAddr    = "127.0.0.1:8500"
	adminEnvFile  = ".run/devstack/admin.env"
	devstackBin   = "bin/devstack"
	stackUpBudget = 5 * time.Minute
)

// busyPorts lists the stack's ports something already listens on.
func busyPorts(ctx context.Context) []string {
	var busy []string
	for _, p := range stackProcesses() {
		d := net.Dialer{Timeout: 300 * time.Millisecond}
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)))
		if err == nil {
			conn.Close()
			busy = append(busy, fmt.Sprintf("%d (%s)", p.Port, p.Name))
		}
	}
	return busy
}

// bringUp starts the stack with `devstack up`, or with reuse checks that a
// running one answers. Without reuse it refuses to start over ports in use:
// they may belong to another `make up` or to something else entirely, and
// measuring either would be wrong.
func bringUp(ctx context.Context, root string, reuse, traced bool) (*stack, error) {
	s := &stack{root: root, traced: traced}
	if reuse {
		if err := s.ready(ctx); err != nil {
			return nil, fmt.Errorf("-reuse: no running stack answers (%w); start one with `make up`", err)
		}
		return s, nil
	}
	if busy := busyPorts(ctx); len(busy) > 0 {
		return nil, fmt.Errorf("ports already in use: %s.\nIf that is a `make up` stack, run with -reuse (make bench BENCH_FLAGS=-reuse) or stop it with `make down`", strings.Join(busy, ", "))
	}
	if _, err := os.Stat(filepath.Join(root, devstackBin)); err != nil {
		return nil, fmt.Errorf("%s is missing: run `make build` (make bench does)", devstackBin)
	}
	s.started = true // from here on, down is owed even if up fails half way
	upCtx, cancel := context.WithTimeout(ctx, stackUpBudget)
	defer cancel()
	if err := s.devstack(upCtx, "up"); err != nil {
		return s, err
	}
	return s, s.ready(ctx)
}

// ready checks the ingress and the users service answer.
func (s *stack) ready(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for _, url := range []string{ingressURL + "/healthz", usersURL + "/readyz"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
	}
	return nil
}

// down stops the stack if this run started it. It runs on a context of
// its own: an interrupted benchmark must still clean up.
func (s *stack) down() error {
	if s == nil || !s.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return s.devstack(ctx, "down")
}

func (s *stack) devstack(ctx context.Context, verb string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.root, devstackBin), verb) //nolint:gosec // our own bin/devstack, a fixed verb
	cmd.Dir = s.root
	if !s.traced {
		cmd.Env = append(os.Environ(), "PORTICO_TRACING=off")
	}
	// Its summary (with the admin password) is noise here; it is shown
	// when the command fails.
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("devstack %s: %w\n%s", verb, err, out)
	}
	return nil
}

// adminCredentials reads the bootstrap admin `make up` created (README
// "Quick start": .run/devstack/admin.env).
func adminCredentials(root string) (email, password string, err error) {
	b, err := os.ReadFile(filepath.Join(root, adminEnvFile))
	if err != nil {
		return "", "", fmt.Errorf("bootstrap admin: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PORTICO_ADMIN_EMAIL="); ok {
			email = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "PORTICO_ADMIN_PASSWORD="); ok {
			password = strings.TrimSpace(v)
		}
	}
	if email == "" || password == "" {
		return "", "", errors.New("bootstrap admin: " + adminEnvFile + " lacks PORTICO_ADMIN_EMAIL or PORTICO_ADMIN_PASSWORD")
	}
	return email, password, nil
}
