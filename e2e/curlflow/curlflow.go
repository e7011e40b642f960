// Package curlflow drives a running Portico through its ingress as README's
// curl examples do: register, login, users and products CRUD, the seed's
// /proxy/<service>/ paths, and the Swagger UI with the merged document.
// The suites that run a deployment for real share it (e2e/compose,
// e2e/nomad), so both hold the deployment to one flow.
package curlflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// Client speaks to the ingress at BaseURL as curl does; failures end T.
type Client struct {
	T       *testing.T
	BaseURL string // e.g. http://127.0.0.1:5000
}

// With is the same client failing t instead (for a subtest).
func (c *Client) With(t *testing.T) *Client { return &Client{T: t, BaseURL: c.BaseURL} }

// Reply is one answer of the ingress.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r Reply) String() string { return fmt.Sprintf("%d %.400s", r.Status, r.Body) }

// Do sends one request; header is name, value pairs.
func (c *Client) Do(ctx context.Context, method, path, token, body string, header ...string) (Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return Reply{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// Expect sends one request and requires the status.
func (c *Client) Expect(want int, method, path, token, body string, header ...string) Reply {
	c.T.Helper()
	r, err := c.Do(c.T.Context(), method, path, token, body, header...)
	if err != nil {
		c.T.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		c.T.Fatalf("%s %s: %s; want %d", method, path, r, want)
	}
	return r
}

// Login returns the access token of email, waiting up to a minute for the
// first login: it may meet a route the control plane is still settling.
func (c *Client) Login(ctx context.Context, email, password string) string {
	c.T.Helper()
	var token string
	localenvtest.Eventually(c.T, time.Minute, 500*time.Millisecond, "login of "+email, func(ctx context.Context) error {
		r, err := c.Do(ctx, http.MethodPost, "/api/users/login", "", fmt.Sprintf(`{"email": %q, "password": %q}`, email, password))
		if err != nil {
			return err
		}
		if r.Status != http.StatusOK {
			return errors.New(r.String())
		}
		var body struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.AccessToken == "" || body.TokenType != "Bearer" {
			return fmt.Errorf("login answered %s", r)
		}
		token = body.AccessToken
		return nil
	})
	return token
}

// DecodeJSON decodes a reply's body or fails t.
func DecodeJSON[T any](t *testing.T, r Reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	return v
}

// User is a user as the users service answers it.
type User struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
	IsActive bool   `json:"is_active"`
}

// Product is a product as the products service answers it.
type Product struct {
	ID            int64       `json:"id"`
	Name          string      `json:"name"`
	Price         json.Number `json:"price"`
	StockQuantity int         `json:"stock_quantity"`
}

// Seed is README's "Try it" (the seed's curl examples) with the users and
// products CRUD of the seed's README: register, login, users read, update
// and delete, products create, read, update and delete, and the seed's
// /proxy/<service>/ path. admin is an administrator's token (deleting a
// product is an admin's).
func Seed(t *testing.T, c *Client, admin string) {
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	name, email := "testuser"+suffix, "test"+suffix+"@example.com"
	created := DecodeJSON[User](t, c.Expect(http.StatusCreated, http.MethodPost, "/api/users/users", "",
		fmt.Sprintf(`{"username": %q, "email": %q, "password": "password123"}`, name, email)))
	if created.Username != name || created.Email != email || created.ID == 0 {
		t.Fatalf("registered %+v", created)
	}
	token := c.Login(t.Context(), email, "password123")

	list := DecodeJSON[struct{ Items []User }](t, c.Expect(http.StatusOK, http.MethodGet, "/api/users/users?limit=100", token, ""))
	if len(list.Items) == 0 {
		t.Fatal("GET /api/users/users: no users")
	}
	path := fmt.Sprintf("/api/users/users/%d", created.ID)
	if got := DecodeJSON[User](t, c.Expect(http.StatusOK, http.MethodGet, path, token, "")); got.Email != email {
		t.Fatalf("GET %s: %+v", path, got)
	}
	updated := DecodeJSON[User](t, c.Expect(http.StatusOK, http.MethodPut, path, token,
		fmt.Sprintf(`{"username": "updated_user%s", "is_active": true}`, suffix)))
	if updated.Username != "updated_user"+suffix {
		t.Fatalf("PUT %s: %+v", path, updated)
	}

	p := DecodeJSON[Product](t, c.Expect(http.StatusCreated, http.MethodPost, "/api/products/products", token,
		`{"name": "Laptop Pro `+suffix+`", "description": "High-performance laptop", "price": 1200.00, "stock_quantity": 50}`))
	if p.Price.String() != "1200.00" || p.StockQuantity != 50 {
		t.Fatalf("created %+v", p)
	}
	c.Expect(http.StatusOK, http.MethodGet, "/api/products/products", token, "")
	ppath := fmt.Sprintf("/api/products/products/%d", p.ID)
	c.Expect(http.StatusOK, http.MethodGet, ppath, token, "")
	if got := DecodeJSON[Product](t, c.Expect(http.StatusOK, http.MethodPut, ppath, token, `{"stock_quantity": 49}`)); got.StockQuantity != 49 {
		t.Fatalf("PUT %s: %+v", ppath, got)
	}
	// The seed's gateway path, /proxy/<service>_service/...
	proxied := c.Expect(http.StatusOK, http.MethodGet, "/proxy/products_service/products", token, "")
	if !bytes.Contains(proxied.Body, []byte(`"items"`)) {
		t.Fatalf("/proxy/products_service/products: %s", proxied)
	}
	c.Expect(http.StatusOK, http.MethodGet, "/proxy/users_service/users", token, "")

	// Deleting a product is an admin's; a user deletes themselves.
	c.Expect(http.StatusForbidden, http.MethodDelete, ppath, token, "")
	c.Expect(http.StatusNoContent, http.MethodDelete, ppath, admin, "")
	c.Expect(http.StatusNotFound, http.MethodGet, ppath, token, "")
	c.Expect(http.StatusNoContent, http.MethodDelete, path, token, "")
	c.Expect(http.StatusNotFound, http.MethodGet, path, admin, "")
}

// Docs: the Swagger UI at /docs/ with its assets, and the merged document.
// The document waits up to two minutes: the edge fetches the services'
// documents through the mesh and, while a fetch fails (a sidecar not yet
// configured right after a deployment), retries with backoff of up to 30
// seconds; until the first success /openapi.json answers 503.
func Docs(t *testing.T, c *Client) {
	var doc Reply
	localenvtest.Eventually(t, 2*time.Minute, time.Second, "the merged document served", func(ctx context.Context) error {
		var err error
		if doc, err = c.Do(ctx, http.MethodGet, "/openapi.json", "", ""); err != nil {
			return err
		}
		if doc.Status != http.StatusOK {
			return errors.New(doc.String())
		}
		return nil
	})
	for _, want := range []string{`"/api/users/login"`, `"/api/products/products/{id}"`} {
		if !bytes.Contains(doc.Body, []byte(want)) {
			t.Errorf("/openapi.json has no %s", want)
		}
	}
	page := c.Expect(http.StatusOK, http.MethodGet, "/docs/", "", "")
	if !bytes.Contains(page.Body, []byte(`id="swagger-ui"`)) {
		t.Fatalf("/docs/ is not the Swagger UI page: %s", page)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"/:]+)"`).FindAllSubmatch(page.Body, -1)
	if len(refs) < 4 {
		t.Fatalf("/docs/ references %d assets: %s", len(refs), page)
	}
	for _, ref := range refs {
		r := c.Expect(http.StatusOK, http.MethodGet, "/docs/"+string(ref[1]), "", "")
		if string(ref[1]) == "swagger-ui-bundle.js" && len(r.Body) < 100<<10 {
			t.Errorf("/docs/swagger-ui-bundle.js is %d bytes: not swagger-ui-dist's bundle", len(r.Body))
		}
	}
}
