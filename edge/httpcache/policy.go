package httpcache

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// storableStatus are the status codes this cache stores, given explicit
// freshness: the heuristically cacheable ones of RFC 9110 section 15.1
// that a proxy without range support understands.
var storableStatus = []int{
	http.StatusOK, http.StatusNonAuthoritativeInfo, http.StatusNoContent,
	http.StatusMultipleChoices, http.StatusMovedPermanently, http.StatusPermanentRedirect,
	http.StatusNotFound, http.StatusGone,
}

// storage is the decision about one response: whether it may be stored
// for reuse by other requests, and for how long.
type storage struct {
	// reason is empty when the response may be stored, and otherwise
	// names the rule that forbids it (a metric label and a log field).
	reason string
	// freshFor is the freshness lifetime (RFC 9111 section 4.2.1).
	freshFor time.Duration
	// staleFor is how long past freshness it may be served while it is
	// refreshed (RFC 5861 stale-while-revalidate); zero when forbidden.
	staleFor time.Duration
	// initialAge is the corrected initial age (RFC 9111 section 4.2.3).
	initialAge time.Duration
	// shared: the origin explicitly allows reuse for authenticated
	// requests (RFC 9111 section 3.5).
	shared bool
}

func (s storage) storable() bool { return s.reason == "" }

// Reasons a response is not stored.
const (
	reasonMethod        = "method"
	reasonStatus        = "status"
	reasonRequestNoStor = "request-no-store"
	reasonNoStore       = "no-store"
	reasonPrivate       = "private"
	reasonNoCache       = "no-cache"
	reasonVaryStar      = "vary-star"
	reasonSetCookie     = "set-cookie"
	reasonAuthenticated = "authenticated"
	reasonNoFreshness   = "no-explicit-freshness"
	reasonTooLarge      = "too-large"
	reasonAlreadyStale  = "already-stale"
)

// decideStorage applies RFC 9111 section 3 for a shared cache to a
// response of the origin to req. requestTime and responseTime bracket the
// origin exchange. The cache is deliberately stricter than the RFC in two
// ways that can only cost hits, never correctness: it uses no heuristic
// freshness (the origin decides, or nothing is stored), and it does not
// store responses that demand revalidation on every use (no-cache).
func decideStorage(req *Request, resp *Response, requestTime, responseTime time.Time, maxBody int) storage {
	reqCC := parseCacheControl(req.Header)
	cc := parseCacheControl(resp.Header)
	switch {
	case req.Method != http.MethodGet:
		return storage{reason: reasonMethod}
	case !slices.Contains(storableStatus, resp.Status):
		return storage{reason: reasonStatus}
	case reqCC.has("no-store"):
		return storage{reason: reasonRequestNoStor}
	case cc.has("no-store"):
		return storage{reason: reasonNoStore}
	case cc.has("private"):
		// Whatever its argument: private="field" would need the cache to
		// drop those fields, and refusing is always safe.
		return storage{reason: reasonPrivate}
	case cc.has("no-cache"):
		return storage{reason: reasonNoCache}
	case slices.Contains(varyNames(resp.Header), "*"):
		return storage{reason: reasonVaryStar}
	case resp.Header.Get("Set-Cookie") != "":
		// A cookie is set for one client; replaying it would hand that
		// client's session to others.
		return storage{reason: reasonSetCookie}
	case req.authenticated() && !explicitlyShared(cc):
		return storage{reason: reasonAuthenticated}
	case len(resp.Body) > maxBody:
		return storage{reason: reasonTooLarge}
	}

	s := storage{initialAge: initialAge(resp.Header, requestTime, responseTime), shared: explicitlyShared(cc)}
	date := parseHTTPDate(resp.Header.Get("Date"), responseTime)
	switch maxAge, ok := cc.seconds("s-maxage"); {
	case ok:
		s.freshFor = maxAge
	default:
		if maxAge, ok := cc.seconds("max-age"); ok {
			s.freshFor = maxAge
		} else if expires := resp.Header.Get("Expires"); expires != "" {
			// An invalid Expires, such as "0", means already expired.
			if t, err := http.ParseTime(expires); err == nil && t.After(date) {
				s.freshFor = t.Sub(date)
			}
		} else {
			return storage{reason: reasonNoFreshness}
		}
	}
	// must-revalidate and proxy-revalidate forbid serving stale, and so
	// does s-maxage for a shared cache (RFC 9111 section 5.2.2.10).
	if !cc.has("must-revalidate") && !cc.has("proxy-revalidate") && !cc.has("s-maxage") {
		s.staleFor, _ = cc.seconds("stale-while-revalidate")
	}
	if s.freshFor+s.staleFor <= s.initialAge {
		return storage{reason: reasonAlreadyStale}
	}
	return s
}

// explicitlyShared reports the directives that let a shared cache store
// and reuse a response to a request with credentials.
func explicitlyShared(cc directives) bool {
	return cc.has("public") || cc.has("s-maxage") || cc.has("must-revalidate")
}

// initialAge is the corrected initial age of RFC 9111 section 4.2.3.
func initialAge(h http.Header, requestTime, responseTime time.Time) time.Duration {
	var ageValue time.Duration
	if n, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && n > 0 {
		ageValue = deltaSeconds(n)
	}
	date := parseHTTPDate(h.Get("Date"), responseTime)
	apparent := max(0, responseTime.Sub(date))
	corrected := ageValue + responseTime.Sub(requestTime)
	return max(apparent, corrected)
}

func parseHTTPDate(v string, fallback time.Time) time.Time {
	if t, err := http.ParseTime(v); err == nil {
		return t
	}
	return fallback
}

// varyNames lists the canonical header names of every Vary field line.
func varyNames(h http.Header) []string {
	var names []string
	for _, line := range h.Values("Vary") {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if name != "*" {
				name = http.CanonicalHeaderKey(name)
			}
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// requestAllowsStored reports whether the request's own directives let a
// stored response answer it without going to the origin.
func requestAllowsStored(req *Request) bool {
	cc := parseCacheControl(req.Header)
	if cc.has("no-cache") || cc.has("no-store") {
		return false
	}
	if maxAge, ok := cc.seconds("max-age"); ok && maxAge == 0 {
		return false
	}
	// HTTP/1.0 clients (RFC 9111 section 5.4).
	if len(cc) == 0 && strings.Contains(strings.ToLower(req.Header.Get("Pragma")), "no-cache") {
		return false
	}
	return true
}
