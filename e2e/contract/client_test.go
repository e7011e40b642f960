package contract_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// client calls the ingress as any HTTP client would; no proxy from the
// environment.
var client = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 20 * time.Second}

// get returns the body of a 200 to GET url.
func get(ctx context.Context, url string) ([]byte, error) {
	status, body, err := call(ctx, http.MethodGet, url, "", nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %.200s", url, status, body)
	}
	return body, nil
}

// call sends a JSON body (if any) with a bearer token (if any).
func call(ctx context.Context, method, url, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// login returns an access token for email and password.
func login(ctx context.Context, email, password string) (string, error) {
	status, body, err := call(ctx, http.MethodPost, sys.ingressURL+"/api/users/login", "",
		map[string]string{"email": email, "password": password})
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("login %s: %d %.200s", email, status, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("login %s: no token in %.200s (%w)", email, body, err)
	}
	return tok.AccessToken, nil
}

// register creates an ordinary user and returns its email and password.
func register(ctx context.Context, prefix string) (email, password string, err error) {
	name := prefix + "-" + randomHex(4)
	email, password = name+"@example.com", "password-"+randomHex(8)
	status, body, err := call(ctx, http.MethodPost, sys.ingressURL+"/api/users/users", "",
		map[string]string{"username": name, "email": email, "password": password})
	if err != nil {
		return "", "", err
	}
	if status != http.StatusCreated {
		return "", "", fmt.Errorf("register %s: %d %.200s", name, status, body)
	}
	return email, password, nil
}
