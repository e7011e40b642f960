package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/portico-mesh/portico/services/platform/identity"
)

// ingressContract checks exchanges through the ingress against the merged
// document the edge serves, and records the operations exercised.
type ingressContract struct {
	t         *testing.T
	ingress   string
	doc       *openapi3.T
	router    routers.Router
	exercised map[string]bool
}

func newIngressContract(t *testing.T, ingress string) *ingressContract {
	t.Helper()
	var raw []byte
	waitFor(t, 30*time.Second, "the merged document through the ingress", func() bool {
		r, err := call(http.MethodGet, ingress+"/openapi.json", "", identity.Identity{}, "")
		raw = r.body
		return err == nil && r.status == http.StatusOK && strings.Contains(string(r.body), "/api/users/") &&
			strings.Contains(string(r.body), "/api/products/")
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatal(err)
	}
	// Requests are matched as clients send them: to the ingress.
	doc.Servers = openapi3.Servers{{URL: ingress}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &ingressContract{t: t, ingress: ingress, doc: doc, router: router, exercised: map[string]bool{}}
}

// do sends one request as documented and checks it and its response
// against the document; want is the status the test expects.
func (c *ingressContract) do(want int, method, path, token, body string, kv ...string) reply {
	c.t.Helper()
	if token != "" {
		kv = append(kv, "Authorization", token)
	}
	r := mustCall(c.t, want, method, c.ingress+path, "", identity.Identity{}, body, kv...)

	req, err := http.NewRequest(method, c.ingress+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Fatalf("%s %s is not in the merged document: %v", method, path, err)
	}
	op := route.Operation.OperationID
	c.exercised[op] = true
	input := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	ctx := context.Background()
	if r.status < 300 {
		if err := openapi3filter.ValidateRequest(ctx, input); err != nil {
			c.t.Errorf("%s: the system accepted a request the document forbids: %v", op, err)
		}
	}
	if err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 r.status,
		Header:                 r.header,
		Body:                   io.NopCloser(bytes.NewReader(r.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}); err != nil {
		c.t.Errorf("%s: response %d does not match the document: %v\n%s", op, r.status, err, r.body)
	}
	return r
}

// TestEveryDocumentedOperationThroughTheIngress calls every operation of
// the merged document through the ingress, as the document describes it
// (with a token where it requires one), and checks each status and body
// against the document.
func TestEveryDocumentedOperationThroughTheIngress(t *testing.T) {
	st := startStack(t)
	c := newIngressContract(t, st.ingress)

	// Public operations.
	c.do(200, http.MethodGet, "/api/users/.well-known/jwks.json", "", "")
	r := c.do(201, http.MethodPost, "/api/users/users", "", `{"username": "dave", "email": "dave@example.com", "password": "password123"}`)
	user := decodeJSON[struct {
		ID int64 `json:"id"`
	}](t, r.body)
	c.do(200, http.MethodPost, "/api/users/login", "", `{"email": "dave@example.com", "password": "password123"}`)
	c.do(401, http.MethodPost, "/api/users/login", "", `{"email": "dave@example.com", "password": "wrong-password"}`)
	token := login(t, st.ingress, "dave@example.com", "password123")
	admin := login(t, st.ingress, adminEmail, adminPassword)

	// Operations that need a token, without one: the ingress refuses.
	c.do(401, http.MethodGet, "/api/products/products", "", "")
	c.do(401, http.MethodGet, fmt.Sprintf("/api/users/users/%d", user.ID), "", "")

	// Users.
	c.do(200, http.MethodGet, "/api/users/users", token, "")
	c.do(200, http.MethodGet, fmt.Sprintf("/api/users/users/%d", user.ID), token, "")
	c.do(200, http.MethodPut, fmt.Sprintf("/api/users/users/%d", user.ID), token, `{"username": "dave2"}`)

	// Products, reads through the edge.
	r = c.do(201, http.MethodPost, "/api/products/products", token, `{"name": "Lamp", "description": "d", "price": 12.5, "stock_quantity": 3}`)
	p := decodeJSON[product](t, r.body)
	item := fmt.Sprintf("/api/products/products/%d", p.ID)
	c.do(200, http.MethodGet, "/api/products/products", token, "")
	r = c.do(200, http.MethodGet, item, token, "")
	c.do(304, http.MethodGet, item, token, "", "If-None-Match", r.header.Get("ETag"))
	c.do(404, http.MethodGet, "/api/products/products/999999", token, "")
	c.do(200, http.MethodPut, item, token, `{"stock_quantity": 2}`)
	c.do(422, http.MethodPut, item, token, `{"price": "-1"}`)
	c.do(403, http.MethodDelete, item, token, "")
	c.do(204, http.MethodDelete, item, admin, "")
	c.do(204, http.MethodDelete, fmt.Sprintf("/api/users/users/%d", user.ID), token, "")

	var missing []string
	for _, item := range c.doc.Paths.Map() {
		for _, op := range item.Operations() {
			if !c.exercised[op.OperationID] {
				missing = append(missing, op.OperationID)
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("operations never called through the ingress: %s", strings.Join(missing, ", "))
	}
	t.Logf("%d documented operations called through the ingress and checked against the merged document", len(c.exercised))
}
