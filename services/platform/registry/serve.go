package registry

import (
	"context"
	"log/slog"
	"time"
)

// Lifecycle is how long deregistration may take, and how long callers'
// sidecars get to notice it before the server stops accepting.
type Lifecycle struct {
	DeregisterTimeout time.Duration
	Drain             time.Duration
	Log               *slog.Logger
}

// Serve runs serve while the instance is registered. reg keeps the
// registration until ctx ends (or serve returns on its own); then the
// instance is deregistered and, on a shutdown, Drain passes before the
// context serve got ends, so that callers stop sending requests before
// the server refuses them. With reg nil, serve gets ctx as it is.
func Serve(ctx context.Context, reg *Registrar, lc Lifecycle, serve func(context.Context) error) error {
	if reg == nil {
		return serve(ctx)
	}
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	regCtx, stopRegistry := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stopServing()
		reg.Run(regCtx) // until shutdown begins or serving failed
		lc.leave(ctx, reg)
	}()
	err := serve(serveCtx)
	stopRegistry()
	<-done
	return err
}

func (lc Lifecycle) leave(ctx context.Context, reg *Registrar) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lc.DeregisterTimeout)
	defer cancel()
	if err := reg.Deregister(dctx); err != nil && lc.Log != nil {
		lc.Log.Warn("consul deregistration failed; the agent's check will expire the instance", "error", err.Error())
	}
	if ctx.Err() == nil || lc.Drain <= 0 {
		return // the server failed on its own: nothing to drain
	}
	t := time.NewTimer(lc.Drain)
	defer t.Stop()
	<-t.C
}
