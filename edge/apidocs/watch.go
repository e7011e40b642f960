package apidocs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// Source is a service that publishes its document at Path.
type Source struct {
	Service string
	Path    string
}

// Catalog lists the services that publish a document.
type Catalog interface {
	// Sources blocks until the list may differ from the one at index
	// (0 answers at once), wait passes or ctx ends, and returns the list
	// with its new index.
	Sources(ctx context.Context, index uint64, wait time.Duration) ([]Source, uint64, error)
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
	// MinInterval separates catalog queries (default 100ms, plus up to
	// as much jitter), so a flapping catalog cannot spin the watcher.
	MinInterval time.Duration
	// MaxBackoff caps the wait after errors (default 30s).
	MaxBackoff time.Duration
	// FetchTimeout bounds fetching one document (default 5s).
	FetchTimeout time.Duration
}

// Watcher keeps the merged document current with the catalog.
type Watcher struct {
	cfg     WatcherConfig
	current atomic.Pointer[Document]
	// last known good document of each service, kept when a refetch fails
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
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 5 * time.Second
	}
	return &Watcher{cfg: cfg, specs: map[string]Spec{}}, nil
}

// Document returns the current merged document, nil before the first.
func (w *Watcher) Document() *Document { return w.current.Load() }

// Run watches the catalog until ctx ends, in the manner of
// consul-template's views: blocking queries on the catalog index, an
// index that goes backwards resets to 0, no work when nothing changed,
// a minimum interval with jitter between queries, and capped quadratic
// back-off on errors. Documents that failed to fetch are retried with
// back-off even when the catalog stays the same.
func (w *Watcher) Run(ctx context.Context) error {
	var (
		index    uint64
		last     []Source
		failures int // consecutive catalog errors
		retries  int // consecutive incomplete refreshes
		complete = false
	)
	for {
		wait := w.cfg.Wait
		if !complete && index > 0 {
			wait = w.backoff(retries)
		}
		sources, next, err := w.cfg.Catalog.Sources(ctx, index, wait)
		if stopped(ctx) {
			return nil // an error now is only the cancellation
		}
		if err != nil {
			failures++
			d := w.backoff(failures)
			w.cfg.Log.Warn("catalog query failed", "error", err.Error(), "retry_in", d.String())
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		failures = 0
		if next < index {
			next = 0 // the catalog was reset (e.g. a new Consul leader)
		}
		index = next
		if !complete || !slices.Equal(sources, last) {
			complete = w.refresh(ctx, sources)
			last = sources
			if complete {
				retries = 0
			} else {
				retries++
			}
		}
		jitter := time.Duration(rand.Int64N(int64(w.cfg.MinInterval) + 1)) //nolint:gosec // jitter needs no cryptographic randomness
		if !sleep(ctx, w.cfg.MinInterval+jitter) {
			return nil
		}
	}
}

// backoff is quadratic in n, capped: 1s, 4s, 9s, ...
func (w *Watcher) backoff(n int) time.Duration {
	n = max(n, 1)
	return min(time.Duration(n*n)*time.Second, w.cfg.MaxBackoff)
}

func stopped(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
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

// Sources returns the list at once the first time, then waits: a fixed
// list never changes.
func (s StaticCatalog) Sources(ctx context.Context, index uint64, wait time.Duration) ([]Source, uint64, error) {
	if index > 0 {
		sleep(ctx, wait)
	}
	return slices.Clone(s), 1, nil
}
