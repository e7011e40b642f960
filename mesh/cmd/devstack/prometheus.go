package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// Prometheus scrapes the whole stack with observability/prometheus, on its
// usual port. The binary is Debian's (package prometheus, `make deps`).
const (
	prometheusPort = 9090
	prometheusBin  = "/usr/bin/prometheus"
)

// startPrometheus runs Prometheus last, so its first scrapes find
// everything up.
func (s *supervisor) startPrometheus(ctx context.Context) error {
	if _, err := os.Stat(prometheusBin); err != nil {
		return fmt.Errorf("%s: %w (run `make deps`: it installs Debian's prometheus package)", prometheusBin, err)
	}
	dir := filepath.Join(s.l.Data, "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	url := "http://" + localenv.Loopback(prometheusPort)
	p := &prometheusProcess{
		ready: url + "/-/ready",
		cmd: localenv.Command{
			Name: "prometheus", Path: prometheusBin, Dir: s.l.Root, LogPath: s.l.logFile("prometheus"),
			Args: []string{
				"--config.file=" + filepath.Join(s.l.Root, "observability", "prometheus", "prometheus.yml"),
				"--storage.tsdb.path=" + dir,
				"--storage.tsdb.retention.time=2d",
				"--web.listen-address=" + localenv.Loopback(prometheusPort),
				"--log.level=warn",
				// The latency histograms carry trace ids as exemplars,
				// which Grafana links to traces.
				"--enable-feature=exemplar-storage",
			},
		},
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	s.stack.Started(p.Pid())
	s.stack.OnStop("prometheus", p.Stop)
	s.keep("prometheus", p)
	s.track(componentState{
		Name: "prometheus", PID: p.Pid(), URL: url, Health: p.ready, Log: s.l.logFile("prometheus"),
	})
	return nil
}

// prometheusProcess is the current run of Prometheus, restartable by keep.
type prometheusProcess struct {
	cmd   localenv.Command
	ready string

	mu   sync.Mutex
	proc *localenv.Process // nil while stopped
}

func (p *prometheusProcess) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		select {
		case <-p.proc.Done():
		default:
			return nil // running
		}
	}
	proc, err := localenv.StartProcess(p.cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = localenv.Poll(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		select {
		case <-proc.Done():
			return localenv.StopPolling(fmt.Errorf("exited before becoming ready: %w", proc.Err()))
		default:
		}
		return stack.ExpectOK(ctx, p.ready, "")
	})
	if err != nil {
		err = fmt.Errorf("prometheus (pid %d): %w", proc.Pid(), err)
		stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer stopCancel()
		return errors.Join(err, proc.Stop(stopCtx), fmt.Errorf("log:\n%s", proc.LogTail(20)))
	}
	p.proc = proc
	return nil
}

func (p *prometheusProcess) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return nil
	}
	err := p.proc.Stop(ctx)
	p.proc = nil
	return err
}

func (p *prometheusProcess) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return 0
	}
	return p.proc.Pid()
}

// Done is closed when the current run exits, and already closed while
// stopped, so that a keeper starts it again.
func (p *prometheusProcess) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return doneOrClosed(nil)
	}
	return p.proc.Done()
}
