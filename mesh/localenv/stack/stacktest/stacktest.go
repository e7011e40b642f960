// Package stacktest runs an end-to-end suite against one stack built by
// package stack: the directory, the deadlines, the stop and what is kept
// when something failed are the same for every suite that shares one
// system among its tests (e2e/system, e2e/contract, e2e/faults).
package stacktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// StopTimeout bounds the stop of everything a suite started.
const StopTimeout = 90 * time.Second

// Tests runs a suite's tests and returns their exit code: a *testing.M,
// or a wrapper that reports on them once they ran (e2e/faults prints its
// matrix).
type Tests interface{ Run() int }

// Run builds a stack in a fresh directory under /tmp, gives it to start
// under a deadline of startTimeout, runs the suite's tests when start
// succeeded, and stops the stack. The directory is removed unless start,
// a test or the stop failed: its logs then explain the failure, and its
// path is printed. name prefixes what Run prints. It returns the exit code
// for os.Exit.
func Run(m Tests, name string, startTimeout time.Duration, start func(context.Context, *stack.Stack) error) int {
	st, err := newStack(name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: start: %v\n", name, err)
		return 1
	}
	startCtx, cancel := context.WithTimeout(context.Background(), startTimeout)
	err = start(startCtx, st)
	cancel()
	code := 1
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: start: %v\n", name, err)
	} else {
		code = m.Run()
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	keep := err != nil || code != 0
	if err := st.Stop(stopCtx); err != nil {
		fmt.Fprintf(os.Stderr, "%s: stop: %v\n", name, err)
		code, keep = 1, true
	}
	if keep {
		fmt.Fprintf(os.Stderr, "%s: logs kept in %s\n", name, st.Dir())
	} else if err := os.RemoveAll(st.Dir()); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	return code
}

// newStack makes the stack's directory and the stack. /tmp rather than
// $TMPDIR keeps PostgreSQL's socket path short; 0755 lets PostgreSQL,
// which runs as another user under root, enter it.
func newStack(name string) (*stack.Stack, error) {
	root, err := localenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/tmp", "portico-"+sanitize(name)+"-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	st, err := stack.New(stack.Config{Root: root, Dir: dir})
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return st, nil
}

// sanitize keeps a suite name ("e2e/system") usable in a file name.
func sanitize(name string) string {
	out := []rune(name)
	for i, r := range out {
		if r == '/' || r == ' ' {
			out[i] = '-'
		}
	}
	return string(out)
}
