package apidocs

import (
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/web"
)

// SwaggerUIVersion is the swagger-ui-dist release the edge serves; the
// install script (edge/scripts/install-swagger-ui.sh) fetches exactly it.
const SwaggerUIVersion = "5.35.0"

// DefaultAssetsDir is where the install script puts the assets, relative
// to the repository root.
const DefaultAssetsDir = ".cache/swagger-ui-dist/" + SwaggerUIVersion

// uiFiles are the page and its start-up script, ours; the assets are
// swagger-ui-dist's, installed at build time and never committed.
//
//go:embed ui/index.html ui/init.js
var uiFiles embed.FS

// assets are the files of swagger-ui-dist the page loads.
var assets = map[string]string{
	"swagger-ui.css":                  "text/css; charset=utf-8",
	"swagger-ui-bundle.js":            "text/javascript; charset=utf-8",
	"swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
	"favicon-32x32.png":               "image/png",
	"favicon-16x16.png":               "image/png",
}

// ErrAssetsMissing means the Swagger UI assets are not installed.
var ErrAssetsMissing = errors.New("swagger UI assets are not installed: run edge/scripts/install-swagger-ui.sh (make deps)")

// CheckAssets reports whether dir holds the Swagger UI assets.
func CheckAssets(dir string) error {
	for name := range assets {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return ErrAssetsMissing
		}
	}
	return nil
}

// Routes serves the merged document at /openapi.json and Swagger UI at
// /docs/, with the assets read from assetsDir.
func Routes(w *Watcher, assetsDir string) []web.Route {
	assetFS := os.DirFS(assetsDir)
	return []web.Route{
		{Method: http.MethodGet, Path: "/openapi.json", Handler: func(c *fiber.Ctx) error {
			doc := w.Document()
			if doc == nil {
				return problem.New(problem.TypeUnavailable, http.StatusServiceUnavailable,
					"no service has published its API document yet")
			}
			c.Set(fiber.HeaderCacheControl, "no-cache")
			c.Set(fiber.HeaderETag, doc.ETag)
			if c.Get(fiber.HeaderIfNoneMatch) == doc.ETag {
				return c.SendStatus(http.StatusNotModified)
			}
			c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
			return c.Send(doc.JSON)
		}},
		// Routing is not strict, so this is /docs as well; the page's
		// relative asset links need the slash.
		{Method: http.MethodGet, Path: "/docs/", Handler: func(c *fiber.Ctx) error {
			if !strings.HasSuffix(c.Path(), "/") {
				return c.Redirect("docs/", http.StatusMovedPermanently)
			}
			if err := CheckAssets(assetsDir); err != nil {
				return problem.New(problem.TypeUnavailable, http.StatusServiceUnavailable, err.Error())
			}
			return sendEmbedded(c, "ui/index.html", fiber.MIMETextHTMLCharsetUTF8)
		}},
		{Method: http.MethodGet, Path: "/docs/:file", Handler: func(c *fiber.Ctx) error {
			name := c.Params("file")
			if name == "init.js" {
				return sendEmbedded(c, "ui/init.js", "text/javascript; charset=utf-8")
			}
			contentType, ok := assets[name]
			if !ok {
				return problem.NotFound("no such documentation file")
			}
			b, err := fs.ReadFile(assetFS, name)
			if err != nil {
				return problem.New(problem.TypeUnavailable, http.StatusServiceUnavailable, ErrAssetsMissing.Error())
			}
			securityHeaders(c)
			// The version is pinned: assets change only with the edge.
			c.Set(fiber.HeaderCacheControl, "public, max-age=3600")
			c.Set(fiber.HeaderContentType, contentType)
			return c.Send(b)
		}},
	}
}

func sendEmbedded(c *fiber.Ctx, name, contentType string) error {
	b, err := uiFiles.ReadFile(name)
	if err != nil {
		return err
	}
	securityHeaders(c)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderContentType, contentType)
	return c.Send(b)
}

// securityHeaders keep the documentation pages to their own scripts.
func securityHeaders(c *fiber.Ctx) {
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("Content-Security-Policy", strings.Join([]string{
		"default-src 'self'",
		"img-src 'self' data:",
		// Swagger UI sets styles inline.
		"style-src 'self' 'unsafe-inline'",
		"frame-ancestors 'none'",
	}, "; "))
}
