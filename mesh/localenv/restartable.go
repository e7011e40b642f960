package localenv

import (
	"context"
	"sync"
)

// restartable is the current run of a server that Stop and Start restart
// on the same ports. The zero value is stopped. The server types embed it
// for Pid, Done and Stop, and start through startOnce.
type restartable struct {
	mu   sync.Mutex // guards proc across Start and Stop
	proc *Process   // nil while stopped
}

// startOnce runs launch unless a run is alive. launch returns a ready
// process, or an error once it has stopped whatever it started.
func (r *restartable) startOnce(ctx context.Context, launch func(ctx context.Context) (*Process, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if running(r.proc) {
		return nil
	}
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	proc, err := launch(ctx)
	if err != nil {
		return err
	}
	r.proc = proc
	return nil
}

// launchReady starts c and waits until ready succeeds.
func launchReady(ctx context.Context, c Command, ready func(context.Context) error) (*Process, error) {
	proc, err := StartProcess(c)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, proc, ready); err != nil {
		return nil, abort(proc, err)
	}
	return proc, nil
}

// Pid returns the running process's id, or 0 while stopped.
func (r *restartable) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return 0
	}
	return r.proc.Pid()
}

// Done is closed when the running process exits; nil while stopped.
func (r *restartable) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	return r.proc.Done()
}

// Stop shuts the server down and waits; if ctx ends first it is killed.
// Stopping a stopped server does nothing.
func (r *restartable) Stop(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	err := r.proc.Stop(ctx)
	r.proc = nil
	return err
}
