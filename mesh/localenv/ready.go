package localenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"
)

// Free ports are drawn at random below the kernel's ephemeral range
// (32768-60999 by default). A port the kernel hands out for bind(0) comes
// from that range, which is also where every outgoing connection takes its
// source port: under load, one of them could take the port between our
// check and the server's bind.
const (
	freePortLow  = 10000
	freePortHigh = 19999
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
//
// The port is released before returning, so another test process may take
// it before the server binds it; the server then fails to start with
// "address already in use" in its log. Pass a fixed port where that matters.
func FreePort() (int, error) { return portSet{}.take(false) }

// portSet hands out distinct free ports for one server's listeners.
type portSet map[int]bool

// take returns a free TCP port not handed out before by s; udpToo also
// requires the port to be free for UDP.
func (s portSet) take(udpToo bool) (int, error) {
	for range 200 {
		port := freePortLow + rand.IntN(freePortHigh-freePortLow+1)
		if s[port] || !tcpFree(port) || (udpToo && !udpFree(port)) {
			continue
		}
		s[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("find a free port in %d-%d: none in 200 tries", freePortLow, freePortHigh)
}

// FreePorts resolves each zero in ports to a free TCP port on 127.0.0.1,
// distinct from each other and from the ports already set; see FreePort.
func FreePorts(ports ...*int) error {
	return portSet{}.fill(false, ports...)
}

// fill resolves each zero in ports to a free port of s.
func (s portSet) fill(udpToo bool, ports ...*int) error {
	for _, p := range ports {
		if *p != 0 {
			s[*p] = true
		}
	}
	for _, p := range ports {
		if *p != 0 {
			continue
		}
		port, err := s.take(udpToo)
		if err != nil {
			return err
		}
		*p = port
	}
	return nil
}

// DefaultStartTimeout bounds a start when the caller's context has no
// deadline, so a server that never becomes ready fails instead of hanging.
// RabbitMQ needs the most: about 5 s on an idle machine, far more when the
// CPUs are busy with parallel test binaries.
const DefaultStartTimeout = 2 * time.Minute

// withDefaultDeadline returns ctx unchanged if it has a deadline, otherwise
// ctx bounded by DefaultStartTimeout.
func withDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultStartTimeout)
}

const (
	// Readiness polling starts fast, because Redis and a reused PostgreSQL
	// cluster are up within milliseconds, and backs off for RabbitMQ,
	// which takes seconds.
	minPollInterval = 5 * time.Millisecond
	maxPollInterval = 100 * time.Millisecond
	// probeTimeout bounds one readiness attempt, so a half-started server
	// that accepts TCP but never answers cannot eat the whole deadline.
	probeTimeout = 2 * time.Second
)

// waitReady calls probe until it succeeds, p exits, or ctx ends.
func waitReady(ctx context.Context, p *Process, probe func(context.Context) error) error {
	interval := minPollInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, probeTimeout)
		// A probe blocked on a half-open connection returns as soon as
		// the server exits instead of at the end of probeTimeout.
		stopWatching := context.AfterFunc(p.exited, cancel)
		err := probe(attemptCtx)
		stopWatching()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s (pid %d) exited before it was ready: %w", p.name, p.pid, p.Err())
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) not ready: %w; last attempt: %w", p.name, p.pid, context.Cause(ctx), err)
		case <-timer.C:
		}
		interval = min(2*interval, maxPollInterval)
		timer.Reset(interval)
	}
}

// dialProbe returns a probe that succeeds once addr accepts TCP connections.
func dialProbe(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}

// probeConn dials addr for a probe whose reads and writes must end with
// ctx: net.Conn ignores contexts after the dial, so the connection gets
// ctx's deadline and is closed when ctx is canceled (for example because
// the server exited). The caller closes conn and calls release once the
// probe is over.
func probeConn(ctx context.Context, addr string) (conn net.Conn, release func(), err error) {
	var d net.Dialer
	conn, err = d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	return conn, func() { stop() }, nil
}

// stopTimeout bounds the cleanup of a server whose start failed.
const stopTimeout = 10 * time.Second

// abort stops p after a failed start and returns the start error with the
// tail of p's log. It uses a fresh context because the caller's may be the
// one that just expired.
func abort(p *Process, err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	_ = p.Stop(ctx) // best effort; the start error is the one that matters
	return startError(p, err)
}

// environ returns the current environment without the variables named in
// drop, followed by extra. A name in drop that ends in "_" drops every
// variable with that prefix. It keeps settings from the developer's shell
// (RABBITMQ_NODENAME, PGDATA, ...) out of private servers.
func environ(drop []string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		dropped := false
		for _, d := range drop {
			if name == d || (strings.HasSuffix(d, "_") && strings.HasPrefix(name, d)) {
				dropped = true
				break
			}
		}
		if !dropped {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
