package dashboard_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portico-mesh/portico/services/platform/web"
	dashboard "github.com/portico-mesh/portico/web"
)

func newServer(t *testing.T) *web.Server {
	t.Helper()
	board, err := dashboard.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := web.New(web.Config{Service: "dashboard-test"})
	srv.Mount(board.Routes()...)
	return srv
}

func get(t *testing.T, srv *web.Server, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestPageAndAssets: the page and every file it links are served with
// their types, a strict CSP, and an ETag that answers 304.
func TestPageAndAssets(t *testing.T) {
	srv := newServer(t)
	resp, page := get(t, srv, "/", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(page, "<script>") || strings.Contains(page, " style=") {
		t.Error("the page must not need inline script or style")
	}
	for path, contentType := range map[string]string{"/web/app.js": "text/javascript", "/web/style.css": "text/css"} {
		if !strings.Contains(page, `"`+path+`"`) {
			t.Errorf("the page does not link %s", path)
		}
		resp, body := get(t, srv, path, nil)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), contentType) || body == "" {
			t.Errorf("%s: %d %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
		etag := resp.Header.Get("ETag")
		again, body := get(t, srv, path, http.Header{"If-None-Match": {`"other", W/` + etag}})
		if again.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("%s with If-None-Match %s: %d, %d bytes", path, etag, again.StatusCode, len(body))
		}
		stale, _ := get(t, srv, path, http.Header{"If-None-Match": {`"other"`}})
		if stale.StatusCode != http.StatusOK {
			t.Errorf("%s with another ETag: %d", path, stale.StatusCode)
		}
	}
}

// TestUnknownFileIsAProblem: a file that is not embedded answers 404
// problem+json, and paths cannot climb out of the embedded folder.
func TestUnknownFileIsAProblem(t *testing.T) {
	srv := newServer(t)
	for _, path := range []string{"/web/missing.js", "/web/..%2fweb.go", "/web/index.html"} {
		resp, body := get(t, srv, path, nil)
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %d %q %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		var problem struct{ Status int }
		if err := json.Unmarshal([]byte(body), &problem); err != nil || problem.Status != http.StatusNotFound {
			t.Fatalf("%s: body %s", path, body)
		}
	}
}
