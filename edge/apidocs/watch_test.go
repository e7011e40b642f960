package apidocs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// A document that cannot be fetched is retried even though the catalog
// does not change; an invalid one is left out while the rest is served.
func TestWatcherRetriesAndIsolatesBrokenServices(t *testing.T) {
	specs := map[string][]byte{}
	for _, s := range serviceSpecs(t) {
		specs[s.Service] = s.Document
	}
	var usersCalls atomic.Int64
	fetch := func(_ context.Context, service, _ string) ([]byte, error) {
		switch service {
		case "users":
			if usersCalls.Add(1) == 1 {
				return nil, errors.New("connection refused")
			}
			return specs["users"], nil
		case "broken":
			return []byte(`{"openapi": "3.0.3", "paths": {"/x": {"get": {"responses": {"200": {"$ref": "#/nowhere"}}}}}}`), nil
		}
		return specs[service], nil
	}
	w, err := apidocs.NewWatcher(apidocs.WatcherConfig{
		Catalog: apidocs.StaticCatalog{
			{Service: "broken", Path: "/openapi.json"},
			{Service: "products", Path: "/openapi.json"},
			{Service: "users", Path: "/openapi.json"},
		},
		Fetch:      fetch,
		MaxBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, w)

	doc := waitForServices(t, w, "products,users")
	if err := apidocs.Validate(doc.JSON); err != nil {
		t.Fatal(err)
	}
	if usersCalls.Load() < 2 {
		t.Errorf("users fetched %d times", usersCalls.Load())
	}
}

// The watcher follows the catalog's blocking queries: a new list is
// fetched, an answer on an unchanged index is no news, and a list equal
// to the last one (after an index reset) fetches nothing again.
func TestWatcherFollowsTheCatalog(t *testing.T) {
	specs := map[string][]byte{}
	for _, s := range serviceSpecs(t) {
		specs[s.Service] = s.Document
	}
	var (
		mu      sync.Mutex
		fetched = map[string]int{}
		// The second list is answered only once the first was fetched,
		// or it could replace the first before the watcher took it.
		firstFetched = make(chan struct{})
	)
	fetch := func(_ context.Context, service, _ string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if fetched[service]++; len(fetched) == 1 && fetched[service] == 1 {
			close(firstFetched)
		}
		return specs[service], nil
	}
	products := apidocs.Source{Service: "products", Path: "/openapi.json"}
	users := apidocs.Source{Service: "users", Path: "/openapi.json"}
	catalog := newScriptedCatalog(
		catalogAnswer{index: 5, sources: []apidocs.Source{products}},
		catalogAnswer{index: 5, sources: []apidocs.Source{products}}, // the wait timed out
		catalogAnswer{index: 7, sources: []apidocs.Source{products, users}, after: firstFetched},
		catalogAnswer{index: 3, sources: []apidocs.Source{products, users}}, // index reset, same list
	)
	w, err := apidocs.NewWatcher(apidocs.WatcherConfig{
		Catalog: catalog, Fetch: fetch, MinInterval: time.Millisecond, MinBackoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, w)

	waitForServices(t, w, "products,users")
	select {
	case <-catalog.drained:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not run the catalog's script")
	}
	stop()
	if want := []uint64{0, 5, 5, 7, 0}; fmt.Sprint(catalog.waitIndexes()) != fmt.Sprint(want) {
		t.Errorf("catalog queried with indexes %v, want %v", catalog.waitIndexes(), want)
	}
	mu.Lock()
	defer mu.Unlock()
	if fetched["products"] != 2 || fetched["users"] != 1 {
		t.Errorf("documents fetched %v, want products twice (two different lists) and users once", fetched)
	}
}

// run runs w until the returned stop is called or the test ends.
func run(t *testing.T, w *apidocs.Watcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil after its context ended", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run did not return within 5s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitForServices waits until the merged document covers exactly the
// services named (comma-separated, sorted) and returns it.
func waitForServices(t *testing.T, w *apidocs.Watcher, names string) *apidocs.Document {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var doc *apidocs.Document
	err := localenv.Poll(ctx, 10*time.Millisecond, func(context.Context) error {
		doc = w.Document()
		if doc == nil || strings.Join(doc.Services, ",") != names {
			return fmt.Errorf("the document covers %+v, want %s", doc, names)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

type catalogAnswer struct {
	index   uint64
	sources []apidocs.Source
	after   <-chan struct{} // if set, the answer waits for it
}

// scriptedCatalog replays answers, then blocks like a blocking query that
// sees no change, until the query's context ends.
type scriptedCatalog struct {
	mu      sync.Mutex
	script  []catalogAnswer
	indexes []uint64 // WaitIndex of each call, up to the first that blocks
	drained chan struct{}
}

func newScriptedCatalog(script ...catalogAnswer) *scriptedCatalog {
	return &scriptedCatalog{script: script, drained: make(chan struct{})}
}

func (c *scriptedCatalog) Sources(q *api.QueryOptions) ([]apidocs.Source, *api.QueryMeta, error) {
	c.mu.Lock()
	if len(c.script) == 0 {
		select {
		case <-c.drained:
		default:
			c.indexes = append(c.indexes, q.WaitIndex)
			close(c.drained)
		}
		c.mu.Unlock()
		<-q.Context().Done()
		return nil, nil, q.Context().Err()
	}
	c.indexes = append(c.indexes, q.WaitIndex)
	a := c.script[0]
	c.script = c.script[1:]
	c.mu.Unlock()
	if a.after != nil {
		select {
		case <-a.after:
		case <-q.Context().Done():
			return nil, nil, q.Context().Err()
		}
	}
	return a.sources, &api.QueryMeta{LastIndex: a.index}, nil
}

func (c *scriptedCatalog) waitIndexes() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.indexes...)
}
