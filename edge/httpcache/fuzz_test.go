package httpcache

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/services/platform/contract"
)

// FuzzCacheControl: whatever an origin or client sends, the parsed
// directives are well formed, a lifetime is never negative nor beyond the
// RFC's "infinity", and a no-store in any case and spacing is seen,
// whether on a field line of its own or after whatever came before it on
// the same line: a malformed directive must never hide it, or a response
// the origin forbade storing would be stored and served to others.
// Seeds: f.Add below and testdata/fuzz/FuzzCacheControl.
func FuzzCacheControl(f *testing.F) {
	for _, seed := range []string{
		"max-age=60", "public, max-age=60, s-maxage=10, stale-while-revalidate=30",
		`private="Set-Cookie, Authorization", max-age=60`, "no-store", "No-Cache",
		"max-age=99999999999999999999", "max-age=-1", "18446744074", "9223372036854775807", `max-age="60"`, "max-age=1, max-age=2",
		`,, =, "`, `x="a\"b", max-age=5`,
	} {
		f.Add(seed, "No-Store")
	}
	f.Fuzz(func(t *testing.T, line, noStore string) {
		d := parseCacheControl(http.Header{"Cache-Control": {line}})
		for name := range d {
			if name == "" || name != strings.ToLower(strings.TrimSpace(name)) {
				t.Fatalf("directive name %q is not trimmed lower case", name)
			}
			if age, ok := d.seconds(name); ok && (age < 0 || age > (1<<31)*time.Second) {
				t.Fatalf("%s=%q gives the lifetime %v", name, d[name], age)
			}
		}
		// The same text as an Age field: a delta-seconds too, which
		// once overflowed when multiplied out and could wrap an ancient
		// response's age to a small one.
		now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
		age := initialAge(http.Header{"Age": {line}}, now, now)
		if n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64); err == nil && n > 0 {
			if want := time.Duration(min(n, 1<<31)) * time.Second; age != want {
				t.Fatalf("Age: %q gives the initial age %v, want %v", line, age, want)
			}
		} else if age != 0 {
			t.Fatalf("Age: %q gives the initial age %v, want 0", line, age)
		}
		if !maps.Equal(d, parseCacheControl(http.Header{"Cache-Control": {line}})) {
			t.Fatalf("%q parsed twice gave two results", line)
		}
		// Only a spelling of no-store: any case, optional spaces and tabs.
		if !strings.EqualFold(strings.Trim(noStore, " \t"), "no-store") || strings.ContainsAny(noStore, ",\"=") {
			return
		}
		for _, h := range []http.Header{
			{"Cache-Control": {line, noStore}},
			{"Cache-Control": {noStore, line}},
			{"Cache-Control": {line + "," + noStore}},
			{"Cache-Control": {noStore + "," + line}},
		} {
			if !parseCacheControl(h).has("no-store") {
				t.Fatalf("no-store not seen in %q", h.Values("Cache-Control"))
			}
		}
	})
}

// FuzzCacheKey: the keys an entry is stored under are deterministic and
// tell apart every pair of requests that differ in what they cover: the
// upstream, the forwarded prefix and the path with query for the
// resource, and the values of the Vary'd fields for the variant (values
// combined per RFC 9110 section 5.3, whitespace around them ignored);
// a field the response does not vary on never changes the variant.
// Seeds: f.Add below and testdata/fuzz/FuzzCacheKey.
func FuzzCacheKey(f *testing.F) {
	f.Add("products", "/api/products", "/products?limit=2", "Accept-Encoding", "accept-encoding", "gzip", "br", "users", "", "/products")
	f.Add("products", "", "/products/1", "X-Portico-User-Id, Accept", "x-portico-user-id", "1", "2", "products", "/v2", "/products/1")
	f.Add("users", "/api/users", "/users?q=a", "", "Accept", "a", "a", "users", "/api/users", "/users?q=b")
	f.Add("a", "b", "/c", "*", "Accept", "x, y", "x,y", "a", "b", "/c")
	f.Fuzz(func(t *testing.T, upstream, prefix, uri, vary, field, value, otherValue, upstream2, prefix2, uri2 string) {
		// Field values and request targets cannot hold NUL, CR or LF
		// (RFC 9110 section 5.5; Envoy and fasthttp refuse them), and
		// the keys' separators rely on it.
		for _, s := range []string{upstream, prefix, uri, vary, field, value, otherValue, upstream2, prefix2, uri2} {
			if strings.ContainsAny(s, "\x00\r\n") {
				return
			}
		}
		if http.CanonicalHeaderKey(field) == contract.HeaderForwardedPrefix {
			return // part of the resource, not of a variant
		}
		request := func(upstream, prefix, uri string, fieldValue string) *Request {
			h := http.Header{}
			if prefix != "" {
				h.Set(contract.HeaderForwardedPrefix, prefix)
			}
			h.Add(field, fieldValue)
			return &Request{Upstream: upstream, Method: http.MethodGet, URI: uri, Header: h}
		}
		a := request(upstream, prefix, uri, value)
		if resourceID(a) != resourceID(a.clone()) {
			t.Fatal("resourceID is not deterministic")
		}
		b := request(upstream2, prefix2, uri2, value)
		sameResource := upstream == upstream2 && prefix == prefix2 && uri == uri2
		if (resourceID(a) == resourceID(b)) != sameResource {
			t.Fatalf("resourceID equal = %v for %q %q %q and %q %q %q", !sameResource, upstream, prefix, uri, upstream2, prefix2, uri2)
		}

		names := varyNames(http.Header{"Vary": {vary}})
		if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Fatalf("varyNames(%q) = %q is not sorted and unique", vary, names)
		}
		// Field names are case-insensitive tokens (RFC 9110 section 5.1);
		// a name with other characters is malformed and kept as it is.
		if isTokenList(vary) && !slices.Equal(names, varyNames(http.Header{"Vary": {strings.ToUpper(vary)}})) ||
			isTokenList(vary) && !slices.Equal(names, varyNames(http.Header{"Vary": {strings.ToLower(vary)}})) {
			t.Fatalf("varyNames(%q) depends on case", vary)
		}
		if variantID(a, names) != variantID(a.clone(), names) {
			t.Fatal("variantID is not deterministic")
		}
		c := request(upstream, prefix, uri, otherValue)
		covered := slices.Contains(names, http.CanonicalHeaderKey(field))
		sameVariant := !covered || strings.TrimSpace(value) == strings.TrimSpace(otherValue)
		if (variantID(a, names) == variantID(c, names)) != sameVariant {
			t.Fatalf("variantID equal = %v for %s: %q and %q varying on %q", !sameVariant, field, value, otherValue, names)
		}
	})
}

// isTokenList reports whether s is a list of tokens (RFC 9110 sections
// 5.6.1 and 5.6.2): names of token characters, separated by commas with
// optional whitespace around them.
func isTokenList(s string) bool {
	for name := range strings.SplitSeq(s, ",") {
		for _, c := range []byte(strings.Trim(name, " \t")) {
			ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
			if !ok {
				return false
			}
		}
	}
	return true
}

// TestMalformedQuoteHidesNoDirective: the fuzzer's first find. A quote
// that opened no quoted string, or never closed, once turned the rest of
// the line into one argument, and the no-store after it went unseen.
func TestMalformedQuoteHidesNoDirective(t *testing.T) {
	for _, line := range []string{
		`,, =, ",No-Store`,
		`private="Set-Cookie, no-store`,
		`x=a"b, no-store, y="c`,
		`x="a\", no-store`,
		`community="UCI, no-store`,
	} {
		if !parseCacheControl(http.Header{"Cache-Control": {line}}).has("no-store") {
			t.Errorf("no-store not seen in %q", line)
		}
	}
	d := parseCacheControl(http.Header{"Cache-Control": {`private="a, b", x="q\"r, s", max-age=5`}})
	if d["private"] != "a, b" || !d.has("x") || d.has("s") || d["max-age"] != "5" {
		t.Errorf("quoted arguments split wrongly: %q", d)
	}
}

// TestHugeAgeDoesNotWrap: the fuzzer's second find. An Age beyond int64
// nanoseconds was multiplied out and wrapped, so a response another cache
// had held for centuries could be stored as fresh.
func TestHugeAgeDoesNotWrap(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	for _, v := range []string{"18446744074", "9223372036854775807", "2147483648"} {
		if got := initialAge(http.Header{"Age": {v}}, now, now); got != (1<<31)*time.Second {
			t.Errorf("Age: %s gives %v, want 2^31 s", v, got)
		}
	}
	resp := &Response{Status: http.StatusOK, Header: http.Header{"Cache-Control": {"max-age=60"}, "Age": {"18446744074"}}}
	req := &Request{Method: http.MethodGet, URI: "/", Header: http.Header{}}
	if s := decideStorage(req, resp, now, now, 1<<20); s.reason != reasonAlreadyStale {
		t.Errorf("an ancient response is stored: %+v", s)
	}
}
