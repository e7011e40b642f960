package faults_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/portico-mesh/portico/services/platform/contract"
)

// client calls the ingress as any HTTP client would: no proxy from the
// environment, keep-alive on.
var client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}

// request is one call to the ingress.
type request struct {
	method, path string
	token        string // bearer token; empty: anonymous
	body         string // JSON; empty: no body
	// idempotencyKey, when set, is sent as Idempotency-Key.
	idempotencyKey string
}

// reply is what the client got.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string {
	return fmt.Sprintf("%d %s %.300s", r.status, r.header.Get("Content-Type"), r.body)
}

// send sends r through the ingress, within 15 s (a hang is a transport
// error to the load).
func send(ctx context.Context, r request) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var body io.Reader
	if r.body != "" {
		body = bytes.NewReader([]byte(r.body))
	}
	req, err := http.NewRequestWithContext(ctx, r.method, sys.ingressURL+r.path, body)
	if err != nil {
		return reply{}, err
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.idempotencyKey != "" {
		req.Header.Set(contract.HeaderIdempotencyKey, r.idempotencyKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}
