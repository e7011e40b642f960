package process

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// checkDebugAddr accepts a loopback address only: the profiles show a
// process's internals and a CPU profile costs it while it runs, so they
// are for an operator on the host (or inside the container), never for
// the network.
func checkDebugAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("DEBUG_ADDR %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("DEBUG_ADDR %q: the profiling endpoint listens on a loopback address only (127.0.0.1:6060, say)", addr)
	}
	return nil
}

// debugHandler serves Go's profiles under /debug/pprof/, as net/http/pprof
// lays them out, so that `go tool pprof http://ADDR/debug/pprof/profile`
// works as with any Go program.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveDebug is the loop of the profiling endpoint: it serves on ln until
// ctx ends. A profile in progress is cut short at shutdown rather than
// holding it up.
func serveDebug(ln net.Listener) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		srv := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 5 * time.Second}
		stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
		defer stop()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
