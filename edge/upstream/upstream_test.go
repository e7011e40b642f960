package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/httpcache"
)

func TestParseAddresses(t *testing.T) {
	got, err := ParseAddresses(" users=127.0.0.1:19001, products=127.0.0.1:19002 ,")
	if err != nil {
		t.Fatal(err)
	}
	if got["users"] != "127.0.0.1:19001" || got["products"] != "127.0.0.1:19002" || len(got) != 2 {
		t.Fatalf("%v", got)
	}
	if names := strings.Join(got.Names(), ","); names != "products,users" {
		t.Errorf("names %s", names)
	}
	for _, bad := range []string{"", "users", "users=nohost", "Users=127.0.0.1:1", "a=127.0.0.1:1,a=127.0.0.1:2"} {
		if _, err := ParseAddresses(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") == "br" {
			t.Errorf("the client's Accept-Encoding was forwarded")
		}
		switch r.URL.Path {
		case "/slow":
			time.Sleep(200 * time.Millisecond)
		case "/big":
			_, _ = w.Write(make([]byte, 2048))
			return
		}
		w.Header().Set("X-Seen", r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("X-Portico-User-Id"))
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()
	p := New(Config{Addresses: Addresses{"svc": strings.TrimPrefix(srv.URL, "http://"), "down": "127.0.0.1:1"}, MaxResponseBytes: 1024})
	defer p.CloseIdleConnections()
	ctx := context.Background()
	req := &httpcache.Request{Upstream: "svc", Method: http.MethodGet, URI: "/a?b=c", Header: http.Header{
		"X-Portico-User-Id": {"7"}, "Accept-Encoding": {"br"},
	}}
	resp, err := p.RoundTrip(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusTeapot || resp.Header.Get("X-Seen") != "GET /a?b=c 7" {
		t.Errorf("%d %q", resp.Status, resp.Header.Get("X-Seen"))
	}

	tests := []struct {
		upstream, uri string
		timeout       time.Duration
		want          error
		status        int
	}{
		{"nosuch", "/", time.Second, ErrUnknownUpstream, http.StatusBadGateway},
		{"down", "/", time.Second, ErrUnreachable, http.StatusBadGateway},
		{"svc", "/slow", 50 * time.Millisecond, ErrTimeout, http.StatusGatewayTimeout},
		{"svc", "/big", time.Second, ErrTooLarge, http.StatusBadGateway},
	}
	for _, tc := range tests {
		ctx, cancel := context.WithTimeout(ctx, tc.timeout)
		_, err := p.RoundTrip(ctx, &httpcache.Request{Upstream: tc.upstream, Method: http.MethodGet, URI: tc.uri, Header: http.Header{}})
		cancel()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s %s: %v, want %v", tc.upstream, tc.uri, err, tc.want)
			continue
		}
		if p := Classify(err); p == nil || p.Status != tc.status {
			t.Errorf("%s %s: problem %+v, want status %d", tc.upstream, tc.uri, p, tc.status)
		}
	}
}
