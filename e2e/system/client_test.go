package system_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// client calls the ingress as any HTTP client would; no proxy from the
// environment, keep-alive on.
var client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}}

// request is one call to the ingress.
type request struct {
	method, path string
	token        string // bearer token; empty: anonymous
	body         string // JSON; empty: no body
	header       map[string]string
}

// reply is what the client got.
type reply struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

func (r reply) xcache() string { return r.header.Get("X-Cache") }

func (r reply) String() string {
	return fmt.Sprintf("%d X-Cache=%q %.300s", r.status, r.xcache(), r.body)
}

// httpRequest builds the *http.Request of r against the ingress.
func (s *system) httpRequest(ctx context.Context, r request) (*http.Request, error) {
	var body io.Reader
	if r.body != "" {
		body = bytes.NewReader([]byte(r.body))
	}
	req, err := http.NewRequestWithContext(ctx, r.method, s.ingressURL+r.path, body)
	if err != nil {
		return nil, err
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	return req, nil
}

// send sends r through the ingress, within 20 s.
func (s *system) send(ctx context.Context, r request) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := s.httpRequest(ctx, r)
	if err != nil {
		return reply{}, err
	}
	begin := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(begin)}, nil
}

// call sends r and fails the test on a transport error.
func call(t *testing.T, r request) reply {
	t.Helper()
	got, err := sys.send(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// expect sends r and fails the test unless the status is want.
func expect(t *testing.T, want int, r request) reply {
	t.Helper()
	got := call(t, r)
	if got.status != want {
		t.Fatalf("%s %s: got %s, want status %d", r.method, r.path, got, want)
	}
	return got
}

// decodeInto is json.Unmarshal with the body in the error.
func decodeInto(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %.300s: %w", b, err)
	}
	return nil
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %.300s: %v", b, err)
	}
	return v
}
