package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// upTimeout bounds how long `up` waits for the stack to become healthy; a
// cold RabbitMQ start and first migrations fit well inside it.
const upTimeout = 3 * time.Minute

func up(ctx context.Context, l layout) error {
	if pid := supervisorPID(l); pid != 0 {
		fmt.Printf("Portico is already running (supervisor pid %d).\n\n", pid)
		return status(ctx, l)
	}
	for _, dir := range []string{l.State, l.Logs, l.Data, l.Keys} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	for _, bin := range []string{"devstack", "users", "products"} {
		if _, err := os.Stat(filepath.Join(l.Bin, bin)); err != nil {
			return fmt.Errorf("bin/%s is missing: run `make up` (it builds first) or `make build`", bin)
		}
	}
	// Pinned tools from `make deps`, checked before anything starts.
	for _, tool := range []string{"consul", "envoy"} {
		if _, err := localenv.Binary(tool); err != nil {
			return err
		}
	}
	_ = os.Remove(l.stateFile())
	logFile, err := os.OpenFile(l.supervisorLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(l.Bin, "devstack"), "supervise")
	cmd.Dir = l.Root
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A session of its own: the supervisor outlives this command and the
	// terminal it ran in.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	fmt.Printf("Starting Portico (supervisor pid %d, log %s)...\n", pid, rel(l, l.supervisorLog()))

	deadline := time.Now().Add(upTimeout)
	for {
		s, err := readState(l)
		switch {
		case err == nil && s.Phase == phaseReady:
			fmt.Println()
			printSummary(l, s)
			return nil
		case err == nil && s.Phase == phaseFailed:
			return fmt.Errorf("start failed: %s (see %s)", s.Error, rel(l, l.supervisorLog()))
		case !alive(pid):
			return fmt.Errorf("supervisor exited during start; see %s", rel(l, l.supervisorLog()))
		case time.Now().After(deadline):
			return fmt.Errorf("not healthy after %s; see %s and `make status`", upTimeout, rel(l, l.supervisorLog()))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func down(ctx context.Context, l layout) error {
	pid := supervisorPID(l)
	if pid == 0 {
		fmt.Println("Portico is not running.")
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal supervisor %d: %w", pid, err)
	}
	fmt.Printf("Stopping Portico (supervisor pid %d)...\n", pid)
	deadline := time.Now().Add(time.Minute)
	for alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("supervisor %d still running after a minute; see %s", pid, rel(l, l.supervisorLog()))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	fmt.Println("Stopped.")
	return nil
}

func status(ctx context.Context, l layout) error {
	pid := supervisorPID(l)
	if pid == 0 {
		fmt.Println("Portico is not running. Start it with `make up`.")
		return nil
	}
	s, err := readState(l)
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	fmt.Printf("supervisor pid %d, phase %s\n\n", pid, s.Phase)
	fmt.Printf("%-18s %-8s %-11s %-30s %s\n", "COMPONENT", "PID", "HEALTH", "URL", "LOG")
	client := &http.Client{Timeout: 2 * time.Second}
	for _, c := range s.Components {
		health := "down"
		switch {
		case c.PID > 0 && !alive(c.PID):
		case c.Health != "":
			health = probeHealth(ctx, client, c.Health)
		case strings.HasPrefix(c.URL, "http://") && c.PID > 0:
			health = probeHealth(ctx, client, c.URL+"/readyz")
		case probeTCP(ctx, c.URL):
			health = "listening"
		}
		pid := "-"
		if c.PID > 0 {
			pid = strconv.Itoa(c.PID)
		}
		fmt.Printf("%-18s %-8s %-11s %-30s %s\n", c.Name, pid, health, c.URL, rel(l, c.Log))
	}
	return nil
}

// probeHealth GETs url and reports "ready" for a 200.
func probeHealth(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "unknown"
	}
	resp, err := client.Do(req)
	if err != nil {
		return "unreachable"
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "ready"
	}
	return "unready"
}

// probeTCP reports whether the host:port of rawURL accepts connections.
func probeTCP(ctx context.Context, rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return false
	}
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func logs(l layout) error {
	matches, err := filepath.Glob(filepath.Join(l.Logs, "*.log"))
	if err != nil || len(matches) == 0 {
		return errors.New("no logs yet: start Portico with `make up`")
	}
	// Servers keep their logs in their data directories (Consul's, Redis'
	// and RabbitMQ's are files there); follow those the state names too.
	if s, err := readState(l); err == nil {
		for _, c := range s.Components {
			if fi, err := os.Stat(c.Log); err == nil && fi.Mode().IsRegular() && !slices.Contains(matches, c.Log) {
				matches = append(matches, c.Log)
			}
		}
	}
	tail, err := exec.LookPath("tail")
	if err != nil {
		return err
	}
	args := append([]string{"tail", "-n", "20", "-F"}, matches...)
	return syscall.Exec(tail, args, os.Environ())
}

func printSummary(l layout, s stackState) {
	fmt.Println("Portico is up.")
	fmt.Println()
	for _, c := range s.Components {
		fmt.Printf("  %-18s %s\n", c.Name, c.URL)
	}
	for _, c := range s.Components {
		switch c.Name {
		case "ingress":
			fmt.Printf("\nDashboard: %s/   API documentation: %s/docs/\n", c.URL, c.URL)
		case "jaeger":
			// The Go-module build of Jaeger has no UI assets.
			query := strings.TrimSuffix(c.URL, "/api/traces?service=ingress")
			fmt.Printf("\nTraces: Jaeger's query API at %s (this build serves no UI; README \"Tracing\"):\n"+
				"  curl %s/api/traces/<trace_id of an access-log line>\n", query, query)
		}
	}
	if b, err := os.ReadFile(l.adminFile()); err == nil {
		fmt.Printf("\nBootstrap admin (from %s):\n%s", rel(l, l.adminFile()), indent(string(b)))
	}
	fmt.Println()
	fmt.Println("`make status` shows health, `make logs` follows the logs, `make down` stops everything.")
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

func rel(l layout, path string) string {
	if r, err := filepath.Rel(l.Root, path); err == nil {
		return r
	}
	return path
}
