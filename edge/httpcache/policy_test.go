package httpcache

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestDecideStorage(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	date := now.Format(http.TimeFormat)
	tests := []struct {
		name     string
		method   string
		status   int
		reqHdr   []string
		respHdr  []string
		body     int
		reason   string
		fresh    time.Duration
		stale    time.Duration
		age      time.Duration
		shared   bool
		roundTrp time.Duration
	}{
		{name: "max-age", respHdr: []string{"Cache-Control", "max-age=60"}, fresh: time.Minute},
		{name: "public is shared", respHdr: []string{"Cache-Control", "public, max-age=60"}, fresh: time.Minute, shared: true},
		{name: "s-maxage wins and forbids stale", respHdr: []string{"Cache-Control", "max-age=60, s-maxage=10, stale-while-revalidate=30"}, fresh: 10 * time.Second, shared: true},
		{name: "expires", respHdr: []string{"Date", date, "Expires", now.Add(30 * time.Second).Format(http.TimeFormat)}, fresh: 30 * time.Second},
		{name: "invalid expires is expired", respHdr: []string{"Date", date, "Expires", "0"}, reason: reasonAlreadyStale},
		{name: "age counts", respHdr: []string{"Date", date, "Cache-Control", "max-age=60", "Age", "20"}, fresh: time.Minute, age: 20 * time.Second},
		{name: "round trip counts", respHdr: []string{"Date", date, "Cache-Control", "max-age=60"}, fresh: time.Minute, age: 2 * time.Second, roundTrp: 2 * time.Second},
		{name: "older than its lifetime", respHdr: []string{"Cache-Control", "max-age=10", "Age", "20"}, reason: reasonAlreadyStale},
		{name: "stale-while-revalidate", respHdr: []string{"Cache-Control", "max-age=1, stale-while-revalidate=30"}, fresh: time.Second, stale: 30 * time.Second},
		{name: "must-revalidate forbids stale", respHdr: []string{"Cache-Control", "max-age=1, stale-while-revalidate=30, must-revalidate"}, fresh: time.Second, shared: true},
		{name: "no freshness", respHdr: []string{"Content-Type", "text/plain"}, reason: reasonNoFreshness},
		{name: "malformed max-age", respHdr: []string{"Cache-Control", "max-age=soon"}, reason: reasonNoFreshness},
		{name: "no-store", respHdr: []string{"Cache-Control", "no-store, max-age=60"}, reason: reasonNoStore},
		{name: "private", respHdr: []string{"Cache-Control", "max-age=60, private"}, reason: reasonPrivate},
		// The users service's reads: no-store is the first rule they break
		// (was asserted by edge/cmd/edge's TestUserReadsAreNeverStored).
		{name: "private, no-store for a caller", reqHdr: []string{"X-Portico-User-Id", "7"}, respHdr: []string{"Cache-Control", "private, no-store"}, reason: reasonNoStore},
		{name: "private with fields", respHdr: []string{"Cache-Control", `private="Set-Cookie, X-Foo", max-age=60`}, reason: reasonPrivate},
		{name: "no-cache", respHdr: []string{"Cache-Control", "no-cache, max-age=60"}, reason: reasonNoCache},
		{name: "vary star", respHdr: []string{"Cache-Control", "max-age=60", "Vary", "Accept, *"}, reason: reasonVaryStar},
		{name: "set-cookie", respHdr: []string{"Cache-Control", "public, max-age=60", "Set-Cookie", "a=b"}, reason: reasonSetCookie},
		{name: "request no-store", reqHdr: []string{"Cache-Control", "no-store"}, respHdr: []string{"Cache-Control", "max-age=60"}, reason: reasonRequestNoStor},
		{name: "post", method: http.MethodPost, respHdr: []string{"Cache-Control", "max-age=60"}, reason: reasonMethod},
		{name: "server error", status: 500, respHdr: []string{"Cache-Control", "max-age=60"}, reason: reasonStatus},
		{name: "partial content", status: 206, respHdr: []string{"Cache-Control", "max-age=60"}, reason: reasonStatus},
		{name: "not found", status: 404, respHdr: []string{"Cache-Control", "max-age=60"}, fresh: time.Minute},
		{name: "too large", body: 11, respHdr: []string{"Cache-Control", "max-age=60"}, reason: reasonTooLarge},
		{name: "identity without explicit permission", reqHdr: []string{"X-Portico-User-Id", "7"}, respHdr: []string{"Cache-Control", "max-age=60"}, reason: reasonAuthenticated},
		{name: "authorization without explicit permission", reqHdr: []string{"Authorization", "Bearer x"}, respHdr: []string{"Cache-Control", "max-age=60"}, reason: reasonAuthenticated},
		{name: "identity with public", reqHdr: []string{"X-Portico-User-Id", "7"}, respHdr: []string{"Cache-Control", "public, max-age=60"}, fresh: time.Minute, shared: true},
		{name: "identity with s-maxage", reqHdr: []string{"X-Portico-User-Id", "7"}, respHdr: []string{"Cache-Control", "s-maxage=60"}, fresh: time.Minute, shared: true},
		{name: "identity with must-revalidate", reqHdr: []string{"X-Portico-User-Id", "7"}, respHdr: []string{"Cache-Control", "must-revalidate, max-age=60"}, fresh: time.Minute, shared: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &Request{Method: http.MethodGet, Header: header(tc.reqHdr...)}
			if tc.method != "" {
				req.Method = tc.method
			}
			resp := &Response{Status: http.StatusOK, Header: header(tc.respHdr...), Body: make([]byte, tc.body)}
			if tc.status != 0 {
				resp.Status = tc.status
			}
			got := decideStorage(req, resp, now.Add(-tc.roundTrp), now, 10)
			if got.reason != tc.reason {
				t.Fatalf("reason %q, want %q", got.reason, tc.reason)
			}
			if !got.storable() {
				return
			}
			if got.freshFor != tc.fresh || got.staleFor != tc.stale || got.initialAge != tc.age || got.shared != tc.shared {
				t.Errorf("fresh %v stale %v age %v shared %v; want %v %v %v %v",
					got.freshFor, got.staleFor, got.initialAge, got.shared, tc.fresh, tc.stale, tc.age, tc.shared)
			}
		})
	}
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestRequestAllowsStored(t *testing.T) {
	tests := []struct {
		hdr  []string
		want bool
	}{
		{nil, true},
		{[]string{"Cache-Control", "max-age=10"}, true},
		{[]string{"Cache-Control", "max-age=0"}, false},
		{[]string{"Cache-Control", "no-cache"}, false},
		{[]string{"Cache-Control", "no-store"}, false},
		{[]string{"Pragma", "no-cache"}, false},
		{[]string{"Pragma", "no-cache", "Cache-Control", "max-age=10"}, true},
	}
	for _, tc := range tests {
		if got := requestAllowsStored(&Request{Header: header(tc.hdr...)}); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.hdr, got, tc.want)
		}
	}
}

func TestVaryNames(t *testing.T) {
	got := varyNames(header("Vary", "x-portico-user-id, Accept", "Vary", "accept"))
	if want := []string{"Accept", "X-Portico-User-Id"}; !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
}

func TestVariantsDifferByVaryValuesOnly(t *testing.T) {
	vary := []string{"X-Portico-User-Id"}
	alice := &Request{Header: header("X-Portico-User-Id", "1", "Accept", "a")}
	alice2 := &Request{Header: header("X-Portico-User-Id", " 1 ", "Accept", "b")}
	bob := &Request{Header: header("X-Portico-User-Id", "2")}
	if variantID(alice, vary) != variantID(alice2, vary) {
		t.Error("the same caller got two variants")
	}
	if variantID(alice, vary) == variantID(bob, vary) {
		t.Error("two callers share a variant")
	}
	if variantID(alice, nil) != variantID(bob, nil) {
		t.Error("without Vary every request is the same variant")
	}
}

func TestNotModified(t *testing.T) {
	resp := header("ETag", `"3"`, "Last-Modified", "Wed, 25 Nov 2026 10:00:00 GMT")
	tests := []struct {
		req  []string
		want bool
	}{
		{[]string{"If-None-Match", `"3"`}, true},
		{[]string{"If-None-Match", `W/"3"`}, true},
		{[]string{"If-None-Match", `"1", "3"`}, true},
		{[]string{"If-None-Match", `*`}, true},
		{[]string{"If-None-Match", `"4"`}, false},
		{[]string{"If-None-Match", `"4"`, "If-Modified-Since", "Wed, 25 Nov 2026 11:00:00 GMT"}, false},
		{[]string{"If-Modified-Since", "Wed, 25 Nov 2026 11:00:00 GMT"}, true},
		{[]string{"If-Modified-Since", "Wed, 25 Nov 2026 09:00:00 GMT"}, false},
		{nil, false},
	}
	for _, tc := range tests {
		if got := notModified(header(tc.req...), resp); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.req, got, tc.want)
		}
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := &entry{Status: 200, Header: header("Content-Type", "application/json"), FreshFor: time.Minute, Body: []byte(`{"a":1}`)}
	b, err := e.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != 200 || string(got.Body) != `{"a":1}` || got.Header.Get("Content-Type") != "application/json" || got.FreshFor != time.Minute {
		t.Errorf("round trip: %+v", got)
	}
	for _, bad := range [][]byte{nil, {2, 0, 0, 0, 0}, {1, 0, 0, 1, 0}} {
		if _, err := decodeEntry(bad); err == nil {
			t.Errorf("%v decoded", bad)
		}
	}
}
