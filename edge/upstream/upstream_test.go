package upstream

import (
	"context"
	"errors"
	"io"
	"net"
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

// A sidecar listener that is briefly absent (its xDS server restarting)
// refuses connections: the request is sent again once it listens, within
// RefusedRetryFor; after that the refusal is the answer.
func TestRefusedConnectionIsTriedAgain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused from now until the server below listens
	p := New(Config{Addresses: Addresses{"svc": addr}, RefusedRetryFor: 5 * time.Second})
	defer p.CloseIdleConnections()

	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Body", string(body))
		w.WriteHeader(http.StatusCreated)
	}), ReadHeaderTimeout: time.Second}
	listening := make(chan error, 1)
	time.AfterFunc(300*time.Millisecond, func() {
		ln, err := net.Listen("tcp", addr)
		listening <- err
		if err == nil {
			_ = srv.Serve(ln)
		}
	})
	defer srv.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := p.RoundTrip(ctx, &httpcache.Request{Upstream: "svc", Method: http.MethodPost, URI: "/", Header: http.Header{}, Body: []byte("once")})
	if lerr := <-listening; lerr != nil {
		t.Fatalf("listen again on %s: %v", addr, lerr)
	}
	if err != nil {
		t.Fatalf("not tried again once the listener was back: %v", err)
	}
	// The body is sent whole on the attempt that connects.
	if resp.Status != http.StatusCreated || resp.Header.Get("X-Body") != "once" {
		t.Errorf("%d %q", resp.Status, resp.Header.Get("X-Body"))
	}

	quick := New(Config{Addresses: Addresses{"down": "127.0.0.1:1"}, RefusedRetryFor: 200 * time.Millisecond})
	start := time.Now()
	_, err = quick.RoundTrip(ctx, &httpcache.Request{Upstream: "down", Method: http.MethodGet, URI: "/", Header: http.Header{}})
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("err = %v, want ErrUnreachable", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("gave up after %v, RefusedRetryFor is 200ms", took)
	}
}
