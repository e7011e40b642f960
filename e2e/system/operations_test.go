package system_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// The merged document validates as OpenAPI 3, and every operation it
// documents, called through the ingress as documented (with a token where
// its security requires one), answers with a status and a body the
// document declares. An operation the document gains later fails the test
// until the test calls it.
func TestEveryDocumentedOperationAnswersAsDocumented(t *testing.T) {
	c := loadContract(t)
	for _, path := range []string{"/api/users/login", "/api/users/users", "/api/products/products"} {
		if c.doc.Paths.Value(path) == nil {
			t.Fatalf("the merged document lacks %s", path)
		}
	}

	// Users: a new account goes through its whole life.
	carol := account{Username: "carol-" + randomHex(4), Password: "password-" + randomHex(8)}
	carol.Email = carol.Username + "@example.com"
	created := c.call(t, http.StatusCreated, request{method: http.MethodPost, path: "/api/users/users",
		body: fmt.Sprintf(`{"username": %q, "email": %q, "password": %q}`, carol.Username, carol.Email, carol.Password)})
	carol.ID = decode[user](t, created.body).ID
	c.call(t, http.StatusUnauthorized, request{method: http.MethodPost, path: "/api/users/login",
		body: fmt.Sprintf(`{"email": %q, "password": "wrong-password"}`, carol.Email)})
	login := c.call(t, http.StatusOK, request{method: http.MethodPost, path: "/api/users/login",
		body: fmt.Sprintf(`{"email": %q, "password": %q}`, carol.Email, carol.Password)})
	carol.Token = decode[struct {
		AccessToken string `json:"access_token"`
	}](t, login.body).AccessToken
	c.call(t, http.StatusOK, request{method: http.MethodGet, path: "/api/users/.well-known/jwks.json"})
	c.call(t, http.StatusOK, request{method: http.MethodGet, path: "/api/users/users?limit=2", token: carol.Token})
	c.call(t, http.StatusOK, request{method: http.MethodGet, path: userPath(carol.ID), token: carol.Token})
	c.call(t, http.StatusOK, request{method: http.MethodPut, path: userPath(carol.ID), token: carol.Token,
		body: fmt.Sprintf(`{"username": %q}`, carol.Username+"-renamed")})

	// Products: created by carol, read (and revalidated), updated with
	// its ETag, deleted by the admin (only an admin may).
	made := c.call(t, http.StatusCreated, request{method: http.MethodPost, path: "/api/products/products", token: carol.Token,
		body: `{"name": "Contract lamp", "description": "documented", "price": "12.50", "stock_quantity": 3}`})
	p := decode[product](t, made.body)
	c.call(t, http.StatusOK, request{method: http.MethodGet, path: "/api/products/products?limit=5&name=lamp", token: carol.Token})
	item := c.call(t, http.StatusOK, request{method: http.MethodGet, path: productPath(p.ID), token: carol.Token})
	etag := item.header.Get("ETag")
	c.call(t, http.StatusNotModified, request{method: http.MethodGet, path: productPath(p.ID), token: carol.Token,
		header: map[string]string{"If-None-Match": etag}})
	c.call(t, http.StatusNotFound, request{method: http.MethodGet, path: productPath(1 << 40), token: carol.Token})
	// A price the document already forbids: the service refuses it too.
	if r := expect(t, http.StatusUnprocessableEntity, request{method: http.MethodPut, path: productPath(p.ID), token: carol.Token,
		header: map[string]string{"If-Match": etag}, body: `{"price": "-1"}`}); !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("422 is not problem+json: %s", r)
	}
	c.call(t, http.StatusOK, request{method: http.MethodPut, path: productPath(p.ID), token: carol.Token,
		header: map[string]string{"If-Match": etag}, body: `{"stock_quantity": 2}`})
	c.call(t, http.StatusForbidden, request{method: http.MethodDelete, path: productPath(p.ID), token: carol.Token})
	c.call(t, http.StatusNoContent, request{method: http.MethodDelete, path: productPath(p.ID), token: sys.admin.Token})
	// Writes go straight to products, so the cached item goes only when
	// the edge consumes the deletion event; then the read is a 404.
	gone := request{method: http.MethodGet, path: productPath(p.ID), token: carol.Token}
	localenvtest.Eventually(t, 10*time.Second, 20*time.Millisecond, "the deletion event to purge the cached product", func(context.Context) error {
		if r := call(t, gone); r.status != http.StatusNotFound {
			return fmt.Errorf("still %s", r)
		}
		return nil
	})
	c.call(t, http.StatusNotFound, gone)

	// Last, carol deletes her own account.
	c.call(t, http.StatusNoContent, request{method: http.MethodDelete, path: userPath(carol.ID), token: carol.Token})

	// Any other documented operation without path parameters is a read
	// the test can still call meaningfully; anything else is an
	// operation nobody wrote a call for, and fails the test.
	for _, op := range c.operations() {
		if c.called[op] {
			continue
		}
		method, path, _ := strings.Cut(op, " ")
		if method == http.MethodGet && !strings.Contains(path, "{") {
			c.call(t, http.StatusOK, request{method: method, path: path, token: sys.alice.Token})
			continue
		}
		t.Errorf("%s is documented but this test does not call it: add a call", op)
	}
	t.Run("WithoutTokenRefusedAsDocumented", c.checkUnauthenticated)
	t.Logf("%d documented operations called through the ingress: %s", len(c.called), strings.Join(c.operations(), ", "))
}
