package apidocs_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/services/platform/web"
)

// Before the first merge, and without the UI assets, the documentation
// routes answer with problems rather than broken pages.
func TestDocumentationRoutesBeforeTheyAreReady(t *testing.T) {
	if _, err := apidocs.NewWatcher(apidocs.WatcherConfig{Catalog: apidocs.StaticCatalog{}}); err == nil {
		t.Fatal("a watcher without a fetcher was accepted")
	}
	w, err := apidocs.NewWatcher(apidocs.WatcherConfig{
		Catalog: apidocs.StaticCatalog{},
		Fetch:   apidocs.HTTPFetcher(http.DefaultClient, func(string) (string, bool) { return "", false }),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := web.New(web.Config{Service: "docs-test"})
	srv.Mount(apidocs.Routes(w, t.TempDir())...)
	for path, want := range map[string]int{
		"/openapi.json":           http.StatusServiceUnavailable,
		"/docs/":                  http.StatusServiceUnavailable,
		"/docs/swagger-ui.css":    http.StatusServiceUnavailable,
		"/docs/init.js":           http.StatusOK,
		"/docs/package.json":      http.StatusNotFound,
		"/docs/%2e%2e%2fserve.go": http.StatusNotFound,
	} {
		resp, err := srv.App().Test(httptest.NewRequest(http.MethodGet, path, nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
