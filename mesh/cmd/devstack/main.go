// Command devstack runs Portico's whole local topology as processes on
// loopback: what `make up`, `make down`, `make status` and `make logs` call.
//
// `up` starts a detached supervisor and returns once everything is healthy.
// The supervisor owns every process it starts (they die with it), restarts
// a service that exits, and on SIGTERM from `down` stops them in reverse
// order. All state lives under .run/ in the repository.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/portico-mesh/portico/mesh/localenv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: devstack up|down|status|logs")
	}
	root, err := localenv.RepoRoot()
	if err != nil {
		return err
	}
	layout := newLayout(root)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "up":
		return up(ctx, layout)
	case "down":
		return down(ctx, layout)
	case "status":
		return status(ctx, layout)
	case "logs":
		return logs(layout)
	case "supervise":
		return supervise(ctx, layout)
	default:
		return fmt.Errorf("unknown command %q: want up, down, status or logs", args[0])
	}
}
