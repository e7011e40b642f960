package system_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// sys is the running system every test and the benchmark share. Tests run
// one after another and leave it as they found it (the Redis outage test
// restarts Redis, which empties the cache and the rate-limit counters).
var sys *system

const (
	// startTimeout bounds the whole start, builds included: on two busy
	// cores a cold build and RabbitMQ's boot take most of it.
	startTimeout = 4 * time.Minute
	// stopTimeout bounds the stop of everything started.
	stopTimeout = 90 * time.Second
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	startCtx, cancel := context.WithTimeout(context.Background(), startTimeout)
	s, err := startSystem(startCtx)
	cancel()
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/system: start:", err)
	} else {
		sys = s
		code = m.Run()
	}
	if s == nil {
		return code
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	// A failed run keeps its logs: they are what explains the failure.
	keep := err != nil || code != 0
	if err := s.stop(stopCtx, !keep); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/system: stop:", err)
		code, keep = 1, true
	}
	if keep {
		fmt.Fprintln(os.Stderr, "e2e/system: logs kept in", s.stack.Dir())
	}
	return code
}
