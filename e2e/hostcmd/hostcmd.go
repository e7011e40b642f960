// Package hostcmd runs the host commands of the suites that drive a
// deployment from outside (docker, docker compose, nomad, the image
// builds): from the repository's root, each within its own deadline, the
// slow ones logged with their duration so a run's log shows where its
// minutes went.
package hostcmd

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// slow is the duration from which a command's time is logged.
const slow = 2 * time.Second

// Runner runs commands for one test.
type Runner struct {
	T    testing.TB
	Root string // the repository: every command's working directory
	// Env is added to this process's environment for every command.
	Env []string
}

// Run runs name args within timeout and returns its combined output; a
// failure ends the test with the output.
func (r Runner) Run(timeout time.Duration, name string, args ...string) string {
	r.T.Helper()
	out, err := r.Try(timeout, name, args...)
	if err != nil {
		r.T.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Try runs name args within timeout and returns its combined output and
// error, for a caller that decides what a failure means.
func (r Runner) Try(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = r.Root
	cmd.Env = append(os.Environ(), r.Env...)
	// A command killed at its deadline may leave children holding its
	// output open; stop waiting for them after this.
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if d := time.Since(start); d >= slow {
		r.T.Logf("%s %s: %v", name, strings.Join(args, " "), d.Round(time.Second))
	}
	return string(out), err
}
