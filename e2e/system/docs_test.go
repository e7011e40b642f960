package system_test

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// /docs/ serves the Swagger UI page through the ingress, without a token,
// and every asset it loads answers with its content type.
func TestSwaggerUILoadsThroughIngress(t *testing.T) {
	page := expect(t, http.StatusOK, request{method: http.MethodGet, path: "/docs/"})
	if ct := page.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("/docs/: Content-Type %q, want text/html", ct)
	}
	if !strings.Contains(string(page.body), `id="swagger-ui"`) {
		t.Fatalf("/docs/ is not the Swagger UI page: %.300s", page.body)
	}
	// Every relative asset the page references, as a browser resolves it.
	refs := regexp.MustCompile(`(?:src|href)="([^"/:]+)"`).FindAllStringSubmatch(string(page.body), -1)
	if len(refs) < 4 {
		t.Fatalf("the page references %d assets, want the stylesheet, two bundles and init.js: %s", len(refs), page.body)
	}
	wantType := map[string]string{".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
	for _, ref := range refs {
		name := ref[1]
		r := expect(t, http.StatusOK, request{method: http.MethodGet, path: "/docs/" + name})
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("/docs/%s: X-Content-Type-Options %q, want nosniff", name, got)
		}
		for ext, ct := range wantType {
			if strings.HasSuffix(name, ext) && !strings.HasPrefix(r.header.Get("Content-Type"), ct) {
				t.Errorf("/docs/%s: Content-Type %q, want %s", name, r.header.Get("Content-Type"), ct)
			}
		}
		// The real swagger-ui-dist bundle, not a stand-in.
		if name == "swagger-ui-bundle.js" && len(r.body) < 100<<10 {
			t.Errorf("/docs/swagger-ui-bundle.js is %d bytes: not swagger-ui-dist's bundle", len(r.body))
		}
	}
	// init.js points the page at the merged document, relative to itself.
	initJS := expect(t, http.StatusOK, request{method: http.MethodGet, path: "/docs/init.js"})
	if !strings.Contains(string(initJS.body), "openapi.json") {
		t.Errorf("init.js does not load openapi.json: %.300s", initJS.body)
	}
	// /docs without the slash leads to the page.
	r := call(t, request{method: http.MethodGet, path: "/docs"})
	if r.status != http.StatusOK && (r.status/100 != 3 || !strings.HasSuffix(r.header.Get("Location"), "docs/")) {
		t.Errorf("/docs: %s, want the page or a redirect to docs/", r)
	}
}

// /docs/ serves its own assets and nothing else: an escaped path out of
// the assets directory finds nothing.
func TestDocsServeNothingOutsideTheirAssets(t *testing.T) {
	r := call(t, request{method: http.MethodGet, path: "/docs/..%2f..%2fgo.mod"})
	if r.status != http.StatusNotFound && r.status != http.StatusBadRequest {
		t.Errorf("/docs/..%%2f..%%2fgo.mod: %s, want 404 (or the ingress's 400)", r)
	}
	if strings.Contains(string(r.body), "module github.com/") {
		t.Errorf("/docs/ served a file outside its assets: %.200s", r.body)
	}
}

// TestSwaggerUIRendersInChromium opens /docs/ through the ingress in
// headless Chromium (installed by make deps) and requires the rendered
// page to list operations of both services: the browser runs the real
// swagger-ui-dist bundle against the merged document.
func TestSwaggerUIRendersInChromium(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "edge/scripts/swagger-ui-smoke.sh"), sys.ingressURL+"/docs/", "users", "products")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Swagger UI did not render both services: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
