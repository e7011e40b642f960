// Package dashboard is Portico's dashboard: a small page, with no build step and
// no third-party code, that signs in, lists and adds products, lists users
// and shows what the gateway did with each call (status, latency, the
// edge cache's verdict, problem details). It is a client of the public API
// like any other: its calls go through the ingress with the user's token.
//
// The edge serves it; the ingress routes / and /web/ to the edge.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/web"
)

//go:embed static
var static embed.FS

// AssetPrefix is where the page's files are served.
const AssetPrefix = "/web/"

// contentSecurityPolicy allows only this origin's own script, style and
// API: the page has no inline script or style, so injected markup could
// not run even if it reached the DOM.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to send.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Dashboard serves the embedded page and its files.
type Dashboard struct {
	index  asset
	assets map[string]asset // by file name under AssetPrefix
}

// New loads the embedded files.
func New() (*Dashboard, error) {
	d := &Dashboard{assets: map[string]asset{}}
	entries, err := fs.ReadDir(static, "static")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		a, err := load(e.Name())
		if err != nil {
			return nil, err
		}
		if e.Name() == "index.html" {
			d.index = a
			continue
		}
		d.assets[e.Name()] = a
	}
	if d.index.body == nil {
		return nil, fmt.Errorf("web: index.html is not embedded")
	}
	return d, nil
}

func load(name string) (asset, error) {
	types := map[string]string{
		".html": fiber.MIMETextHTMLCharsetUTF8,
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
		".svg":  "image/svg+xml",
	}
	contentType, ok := types[path.Ext(name)]
	if !ok {
		return asset{}, fmt.Errorf("web: no content type for %s", name)
	}
	body, err := static.ReadFile("static/" + name)
	if err != nil {
		return asset{}, err
	}
	sum := sha256.Sum256(body)
	return asset{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}, nil
}

// Routes are the page at / and its files under AssetPrefix.
func (d *Dashboard) Routes() []web.Route {
	return []web.Route{
		{Method: http.MethodGet, Path: "/", Handler: func(c *fiber.Ctx) error {
			return send(c, d.index)
		}},
		{Method: http.MethodGet, Path: AssetPrefix + ":file", Handler: func(c *fiber.Ctx) error {
			a, ok := d.assets[c.Params("file")]
			if !ok {
				return problem.NotFound("no such dashboard file")
			}
			return send(c, a)
		}},
	}
}

// send answers with a, revalidated on every use: the files change only
// with the edge, and the ETag makes the check cheap.
func send(c *fiber.Ctx, a asset) error {
	c.Set(fiber.HeaderContentSecurityPolicy, contentSecurityPolicy)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderETag, a.etag)
	if matchesETag(c.Get(fiber.HeaderIfNoneMatch), a.etag) {
		return c.SendStatus(http.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, a.contentType)
	return c.Send(a.body)
}

// matchesETag reports whether an If-None-Match list names etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func matchesETag(ifNoneMatch, etag string) bool {
	for candidate := range strings.SplitSeq(ifNoneMatch, ",") {
		candidate = strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if candidate == "*" || candidate == etag {
			return true
		}
	}
	return false
}
