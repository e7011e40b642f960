package web

import (
	"strings"

	"github.com/gofiber/fiber/v2"
)

// SetLocation sets the Location of a resource created by a request to a
// collection: child (e.g. an id) under the request's path, as a relative
// reference (RFC 9110 section 10.2.2, RFC 3986 section 5.2).
//
// A relative reference resolves against the URL the client sent, so it is
// right behind any path prefix the ingress strips (/api/products/products
// -> /api/products/products/7) without the service knowing or trusting
// that prefix. It starts from the collection's last segment, so a request
// to /products/ (trailing slash) resolves to /products/7 too.
func SetLocation(c *fiber.Ctx, child string) {
	c.Location(ChildReference(c.Path(), child))
}

// ChildReference is the relative reference from requestPath to child
// under it.
func ChildReference(requestPath, child string) string {
	if strings.HasSuffix(requestPath, "/") {
		return child
	}
	return requestPath[strings.LastIndexByte(requestPath, '/')+1:] + "/" + child
}
