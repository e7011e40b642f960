package apidocs_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/apidocs"
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
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	deadline := time.Now().Add(5 * time.Second)
	for {
		doc := w.Document()
		if doc != nil && strings.Join(doc.Services, ",") == "products,users" {
			if err := apidocs.Validate(doc.JSON); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("document never covered products and users: %+v", doc)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if usersCalls.Load() < 2 {
		t.Errorf("users fetched %d times", usersCalls.Load())
	}
}
