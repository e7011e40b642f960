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
	"path/filepath"
	"syscall"
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
	root, err := repoRoot()
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

// repoRoot finds the repository from the working directory, so the tool
// works from any subfolder.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the Portico repository (no go.mod found)")
		}
		dir = parent
	}
}
