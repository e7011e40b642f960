package catalog

import (
	"context"
	"crypto/sha256"

	"github.com/portico-mesh/portico/services/platform/backoff"
)

// publishLoop turns state changes into publishes: it waits for a change,
// lets more arrive for the coalescing window, builds one snapshot and
// publishes it if its content differs from the last one published.
//
// The window is fixed from the first change, not extended by later ones,
// so a steady stream of changes still publishes every Coalesce.
func (w *Watcher) publishLoop(ctx context.Context, st *state, publish func(Snapshot)) {
	var (
		last      [sha256.Size]byte
		published bool
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.changed:
		}
		if !backoff.Wait(ctx, w.cfg.Coalesce) {
			return
		}
		// Changes signalled during the window are in the snapshot built
		// now; those that come after it raise the signal again.
		select {
		case <-st.changed:
		default:
		}
		snap, ready := st.snapshot(!published)
		if !ready {
			continue
		}
		hash, err := snap.contentHash()
		if err != nil {
			// Cannot happen with these types; publishing anyway is the
			// safe side, a duplicate costs the next stage a comparison.
			w.log.Error("hash the snapshot", "err", err)
		} else if published && hash == last {
			continue
		}
		last, published = hash, true
		w.metrics.publishes.Inc()
		w.log.Debug("publishing catalog snapshot", "services", len(snap.Services), "config_present", snap.Config.Present, "config_index", snap.Config.ModifyIndex)
		publish(snap)
	}
}
