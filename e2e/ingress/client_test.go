package ingress_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// response is what a client of the ingress got.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, r.Body)
	}
	return v
}

// call sends one request to base+path with the given headers.
func call(t *testing.T, base, method, path string, header map[string]string, body string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, reader)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func get(t *testing.T, path string, header map[string]string) response {
	t.Helper()
	return call(t, env.ingressURL, http.MethodGet, path, header, "")
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// requireProblem checks an RFC 9457 body of the given status and type.
func requireProblem(t *testing.T, r response, status int, typ string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("content type %q, want application/problem+json: %s", ct, r.Body)
	}
	p := r.JSON(t)
	if p["type"] != typ {
		t.Fatalf("problem type %v, want %s: %s", p["type"], typ, r.Body)
	}
	if s, ok := p["status"].(float64); !ok || int(s) != status {
		t.Fatalf("problem status %v, want %d", p["status"], status)
	}
	// RFC 9110 §15.5.2: a 401 says how to authenticate.
	if status == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("a 401 without a Bearer challenge: WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
	}
}

func errStatus(r response) error { return fmt.Errorf("status %d: %s", r.Status, r.Body) }

// sendRaw writes raw bytes, exactly as given, to the ingress on a
// connection of its own and reads one response: for requests no HTTP
// client would send (smuggling shapes, broken syntax, HTTP/1.0). A
// connection closed without a response is status 0.
func sendRaw(t *testing.T, raw string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(env.ingressURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Logf("no response: %v", err)
		return response{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
