package apidocs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/services/platform/backoff"
	"github.com/portico-mesh/portico/services/platform/consulwatch"
)

// Source is a service that publishes its document at Path.
type Source struct {
	Service string
	Path    string
}

// Catalog lists the services that publish a document, as one Consul
// blocking query (a consulwatch.Fetch): it answers when the list may
// differ from the one at q.WaitIndex (0 answers at once), q.WaitTime
// passes or q's context ends, with the list's index in the QueryMeta. The
// list is sorted by service, so equal catalogs give equal lists.
type Catalog interface {
	Sources(q *api.QueryOptions) ([]Source, *api.QueryMeta, error)
}

// Fetcher fetches a service's document through the mesh.
type Fetcher func(ctx context.Context, service, path string) ([]byte, error)

// Document is a merged document as served.
type Document struct {
	JSON     []byte
	ETag     string
	Services []string
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	Catalog Catalog
	Fetch   Fetcher
	Log     *slog.Logger
	// Wait is how long one blocking catalog query may wait (default 5m).
	Wait time.Duration
	// MinInterval separates catalog queries (default 100ms, plus some
	// jitter), so a flapping catalog cannot spin the watcher.
	MinInterval time.Duration
	// MinBackoff and MaxBackoff bound the waits between retries of a
	// failed catalog query or of documents that could not be fetched
	// (defaults 250ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// FetchTimeout bounds fetching one document (default 5s).
	FetchTimeout time.Duration
}

// Watcher keeps the merged document current with the catalog.
type Watcher struct {
	cfg     WatcherConfig
	current atomic.Pointer[Document]
	// last known good document of each service, kept when a refetch
	// fails; only the refresh loop touches it
	specs map[string]Spec
}

// NewWatcher returns a watcher; Run keeps it current.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Catalog == nil || cfg.Fetch == nil {
		return nil, errors.New("apidocs: WatcherConfig.Catalog and Fetch are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 5 * time.Minute
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 100 * time.Millisecond
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	cfg.MinBackoff = min(cfg.MinBackoff, cfg.MaxBackoff)
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 5 * time.Second
	}
	return &Watcher{cfg: cfg, specs: map[string]Spec{}}, nil
}

// Document returns the current merged document, nil before the first.
func (w *Watcher) Document() *Document { return w.current.Load() }

// Run watches the catalog until ctx ends. Two loops share the work: a
// consulwatch.Watch follows the catalog (blocking queries, index resets,
// backoff on errors, a minimum interval between queries) and hands each
// new list of sources to the refresh loop, which fetches and merges the
// documents when the list changed, and retries documents that failed to
// fetch with backoff even while the catalog stays the same.
func (w *Watcher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The latest list only: a list the refresh loop has not taken yet is
	// replaced by a newer one, so a slow refresh never holds up the watch.
	lists := make(chan []Source, 1)
	watch := &consulwatch.Watch[[]Source]{
		Name:  "apidocs",
		Fetch: w.cfg.Catalog.Sources,
		Deliver: func(sources []Source) {
			select {
			case <-lists:
			default:
			}
			lists <- sources
		},
		Log:         w.cfg.Log,
		WaitTime:    w.cfg.Wait,
		Backoff:     w.backoff(),
		MinInterval: w.cfg.MinInterval,
	}
	watchErr := make(chan error, 1)
	go func() { watchErr <- watch.Run(ctx) }()
	w.refreshLoop(ctx, lists)
	cancel()
	return <-watchErr
}

func (w *Watcher) backoff() backoff.Policy {
	return backoff.Policy{Min: w.cfg.MinBackoff, Max: w.cfg.MaxBackoff}
}

// refreshLoop refreshes the document from each new list of sources until
// ctx ends. An equal list after a complete refresh is no news; after an
// incomplete one the current list is refreshed again with backoff.
func (w *Watcher) refreshLoop(ctx context.Context, lists <-chan []Source) {
	var (
		current  []Source
		complete = true // nothing to retry before the first list
		seen     bool   // a list arrived
		retries  int    // consecutive incomplete refreshes
	)
	policy := w.backoff()
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	for {
		if !complete {
			retry.Reset(policy.Delay(retries))
		}
		select {
		case <-ctx.Done():
			return
		case sources := <-lists:
			retry.Stop()
			if seen && complete && slices.Equal(sources, current) {
				continue
			}
			current, seen = sources, true
		case <-retry.C:
		}
		if complete = w.refresh(ctx, current); complete {
			retries = 0
		} else {
			retries++
		}
	}
}

// refresh fetches every source's document and publishes the merge. A
// service whose document cannot be fetched keeps its last good one; one
// that is invalid is left out. It reports whether every source was
// fetched and merged.
func (w *Watcher) refresh(ctx context.Context, sources []Source) bool {
	complete := true
	var specs []Spec
	for _, src := range sources {
		fctx, cancel := context.WithTimeout(ctx, w.cfg.FetchTimeout)
		doc, err := w.cfg.Fetch(fctx, src.Service, src.Path)
		cancel()
		spec := Spec{Service: src.Service, Path: src.Path, Document: doc}
		if err == nil {
			// Each document is checked alone, so one broken service
			// cannot take the others' documentation down.
			if _, merr := Merge([]Spec{spec}); merr != nil {
				err = merr
			}
		}
		if err != nil {
			complete = false
			w.cfg.Log.Warn("service document unavailable", "service", src.Service, "path", src.Path, "error", err.Error())
			if prev, ok := w.specs[src.Service]; ok && prev.Path == src.Path {
				specs = append(specs, prev)
			}
			continue
		}
		w.specs[src.Service] = spec
		specs = append(specs, spec)
	}
	for name := range w.specs {
		if !slices.ContainsFunc(sources, func(s Source) bool { return s.Service == name }) {
			delete(w.specs, name) // the service left the catalog
		}
	}
	if len(specs) == 0 {
		w.current.Store(nil)
		return complete && len(sources) == 0
	}
	merged, err := Merge(specs)
	if err != nil {
		w.cfg.Log.Error("merging service documents failed; keeping the last document", "error", err.Error())
		return false
	}
	sum := sha256.Sum256(merged)
	doc := &Document{JSON: merged, ETag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	for _, s := range specs {
		doc.Services = append(doc.Services, s.Service)
	}
	slices.Sort(doc.Services)
	if prev := w.current.Load(); prev == nil || prev.ETag != doc.ETag {
		w.cfg.Log.Info("merged API document updated", "services", doc.Services)
	}
	w.current.Store(doc)
	return complete
}

// HTTPFetcher fetches documents from the edge's upstream addresses (its
// sidecar's local listeners), named by service.
func HTTPFetcher(client *http.Client, address func(service string) (string, bool)) Fetcher {
	return func(ctx context.Context, service, path string) ([]byte, error) {
		addr, ok := address(service)
		if !ok {
			return nil, fmt.Errorf("no upstream for service %s", service)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
		}
		const maxDocument = 4 << 20
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
		if err != nil {
			return nil, err
		}
		if len(body) > maxDocument {
			return nil, fmt.Errorf("GET %s: document larger than %d bytes", path, maxDocument)
		}
		return body, nil
	}
}

// StaticCatalog is a fixed list, for running without Consul.
type StaticCatalog []Source

// Sources returns the list at once the first time (index 0), then waits
// like a blocking query that sees no change: a fixed list never changes.
func (s StaticCatalog) Sources(q *api.QueryOptions) ([]Source, *api.QueryMeta, error) {
	if q.WaitIndex > 0 {
		backoff.Wait(q.Context(), q.WaitTime)
	}
	return slices.Clone(s), &api.QueryMeta{LastIndex: 1}, nil
}
