// Package contract holds the names the ingress, the edge and the services
// agree on: the identity headers the ingress sets from a verified token,
// the header that tells the edge which service a cached route belongs to,
// the idempotency key that makes a write retryable, and the surrogate
// keys that tag cached reads and that events purge.
//
// Each side imports these names instead of spelling them, so a rename is
// one change that the compiler carries to every side. Header names are in
// canonical form; Envoy matches them case-insensitively and the control
// plane lowercases them for its configuration.
package contract

import "strconv"

// MaxRequestBody is the largest request body, in bytes, the ingress lets
// through (a longer declared Content-Length is refused there with 413) and
// a service reads: one limit, so a client meets the same 413 wherever it
// is enforced.
const MaxRequestBody = 1 << 20

// HeaderPrefix begins every header of this contract. The ingress removes
// every client-sent header with this prefix before it routes a request,
// so no client can claim an identity or pick an upstream.
const HeaderPrefix = "X-Portico-"

// Identity headers: the ingress strips any client-sent copies and sets them
// from the claims of a verified token. Services trust them because they are
// reachable only through the mesh.
const (
	HeaderUserID   = "X-Portico-User-Id"  // the token's sub claim
	HeaderUsername = "X-Portico-Username" // the username claim
	HeaderEmail    = "X-Portico-Email"    // the email claim
	// HeaderRoles carries the roles claim. Envoy's jwt_authn copies an
	// array claim as base64 of its JSON; services read that and a
	// comma-separated list.
	HeaderRoles = "X-Portico-Roles"
)

// ClaimHeader pairs a token claim with the identity header it fills.
type ClaimHeader struct{ Claim, Header string }

// ClaimHeaders lists every identity header with the claim it carries, in
// a fixed order.
func ClaimHeaders() []ClaimHeader {
	return []ClaimHeader{
		{"sub", HeaderUserID},
		{"username", HeaderUsername},
		{"email", HeaderEmail},
		{"roles", HeaderRoles},
	}
}

// HeaderUpstream names the service a request routed through the edge is
// for; the ingress sets it on the routes it sends to the edge cache.
const HeaderUpstream = "X-Portico-Upstream"

// HeaderForwardedPrefix is the path prefix the ingress serves a service
// under (for example /api/products); the edge cache keys entries on it.
// Services do not read it: their Location and Link headers are relative
// references (web.SetLocation, page.NextLink), right under any prefix.
const HeaderForwardedPrefix = "X-Forwarded-Prefix"

// HeaderIdempotencyKey carries a key a client chose for a write
// (draft-ietf-httpapi-idempotency-key-header). A service that takes it
// answers every repeat of the write from the first one's stored response
// (services/platform/idempotency), so the ingress retries a write that
// carries it as it retries reads.
const HeaderIdempotencyKey = "Idempotency-Key"

// HeaderSurrogateKey tags a cacheable response with the keys that purge
// it. The edge reads and strips it; clients never see it.
const HeaderSurrogateKey = "Surrogate-Key"

// CacheTags names the surrogate keys of one kind of resource: Item tags
// one resource's representations, List tags every page of its collection.
// An event of type "<Kind>.<verb>" purges the item's tag and the list's.
type CacheTags struct {
	Kind string // the event type's prefix, e.g. "product"
	List string // the collection's tag, e.g. "products"
}

// ItemTag is the tag of the resource with this id, e.g. product:42.
func (t CacheTags) ItemTag(id int64) string { return t.Kind + ":" + strconv.FormatInt(id, 10) }

// ProductTags are the tags of the products service's cacheable reads.
// Users' reads are private and never cached, so users have none.
var ProductTags = CacheTags{Kind: "product", List: "products"}
