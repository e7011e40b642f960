package httpcache

import (
	"context"
	"net/http"
	"strings"

	"github.com/portico-mesh/portico/services/platform/contract"
)

// Request is a request the edge forwards, copied out of the Fiber context
// so that it may outlive the handler (single-flight, background refresh).
type Request struct {
	// Upstream names the service that answers, from X-Portico-Upstream.
	Upstream string
	Method   string
	// URI is the path and query as the service serves them (the ingress
	// has already rewritten the client's path).
	URI    string
	Header http.Header
	// Body is the request body of unsafe methods, passed on as is.
	Body []byte
}

// Path is URI without its query.
func (r *Request) Path() string {
	path, _, _ := strings.Cut(r.URI, "?")
	return path
}

// clone returns a deep copy, for work that outlives the request.
func (r *Request) clone() *Request {
	out := *r
	out.Header = r.Header.Clone()
	return &out
}

// authenticated reports whether the request carries credentials or a
// verified identity: a shared cache may then store the response only when
// the origin says so explicitly (RFC 9111 section 3.5).
func (r *Request) authenticated() bool {
	return r.Header.Get("Authorization") != "" ||
		strings.TrimSpace(r.Header.Get(contract.HeaderUserID)) != ""
}

// Response is an origin's complete response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Origin sends a request to the service it names. The edge's
// implementation goes through its sidecar's upstream listeners.
type Origin interface {
	RoundTrip(ctx context.Context, req *Request) (*Response, error)
}

// Headers the cache sets on responses it serves.
const (
	HeaderXCache = "X-Cache"
	HeaderAge    = "Age"
)

// X-Cache values.
const (
	// Hit is a fresh stored response.
	Hit = "HIT"
	// Stale is a stored response past its freshness that the origin allows
	// to be served while it is refreshed in the background.
	Stale = "STALE"
	// Miss came from the origin; it may have been stored.
	Miss = "MISS"
	// Bypass came from the origin without the cache being consulted:
	// the method or request is not cacheable, or Redis is unavailable.
	Bypass = "BYPASS"
)

// hopByHop are connection-specific fields (RFC 9110 section 7.6.1) plus
// what the edge recomputes; they are neither forwarded nor stored.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Content-Length",
}

// stripHopByHop removes hop-by-hop fields, including those Connection names.
func stripHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}
