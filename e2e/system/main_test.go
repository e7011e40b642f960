package system_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/stack"
	"github.com/portico-mesh/portico/mesh/localenv/stack/stacktest"
)

// sys is the running system every test and the benchmark share. Tests run
// one after another and leave it as they found it (the Redis outage test
// restarts Redis, which empties the cache and the rate-limit counters).
var sys *system

// startTimeout bounds the whole start, builds included: on two busy cores
// a cold build and RabbitMQ's boot take most of it.
const startTimeout = 4 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(stacktest.Run(m, "e2e/system", startTimeout, func(ctx context.Context, st *stack.Stack) (err error) {
		sys, err = startSystem(ctx, st)
		return err
	}))
}
