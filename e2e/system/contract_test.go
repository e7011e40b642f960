package system_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// contract checks exchanges with the ingress against the merged OpenAPI
// document and records which operations were called.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	called map[string]bool // "METHOD /path/template"
	// sent is the first request sent for each operation, to replay it
	// without its token.
	sent map[string]request
}

// loadContract fetches /openapi.json through the ingress and requires it
// to be a valid OpenAPI 3 document.
func loadContract(t *testing.T) *contract {
	t.Helper()
	r := expect(t, http.StatusOK, request{method: http.MethodGet, path: "/openapi.json"})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(r.body)
	if err != nil {
		t.Fatalf("the merged document does not load as OpenAPI 3: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q, want 3.x", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the merged document is not valid OpenAPI 3: %v", err)
	}
	// Requests are matched against the document as sent to the ingress.
	doc.Servers = openapi3.Servers{{URL: sys.ingressURL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{doc: doc, router: router, called: map[string]bool{}, sent: map[string]request{}}
}

// operations lists every documented operation as "METHOD /path".
func (c *contract) operations() []string {
	var out []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// requiresToken reports whether op needs the bearer token, by its own
// security or else the document's.
func (c *contract) requiresToken(op *openapi3.Operation) bool {
	sec := c.doc.Security
	if op.Security != nil {
		sec = *op.Security
	}
	for _, req := range sec {
		if len(req) == 0 {
			return false // an empty requirement: anonymous is allowed
		}
	}
	return len(sec) > 0
}

// call sends req through the ingress as the document describes it,
// requires status want, and checks the request and the response against
// the document. It returns the reply for the next steps.
func (c *contract) call(t *testing.T, want int, req request) reply {
	t.Helper()
	route, params := c.route(t, req)
	key := req.method + " " + route.Path
	c.called[key] = true
	if _, seen := c.sent[key]; !seen {
		c.sent[key] = req
	}
	if c.requiresToken(route.Operation) && req.token == "" {
		t.Fatalf("%s: the document requires a token and the test sent none", key)
	}
	r := expect(t, want, req)
	if err := c.validate(route, params, req, r); err != nil {
		t.Errorf("%s: %v", key, err)
	}
	return r
}

func (c *contract) route(t *testing.T, req request) (*routers.Route, map[string]string) {
	t.Helper()
	httpReq, err := sys.httpRequest(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	route, params, err := c.router.FindRoute(httpReq)
	if err != nil {
		t.Fatalf("%s %s is not in the merged document: %v", req.method, req.path, err)
	}
	return route, params
}

// validate checks that the request is one the document allows and that
// the response's status, headers and body are declared for it.
func (c *contract) validate(route *routers.Route, params map[string]string, req request, r reply) error {
	httpReq, err := sys.httpRequest(context.Background(), req)
	if err != nil {
		return err
	}
	input := &openapi3filter.RequestValidationInput{
		Request: httpReq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: bearerPresent},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
		return fmt.Errorf("the request does not match the document: %w", err)
	}
	responses := route.Operation.Responses
	if responses.Status(r.status) == nil && responses.Default() == nil {
		return fmt.Errorf("status %d is not declared", r.status)
	}
	if r.status == http.StatusNotModified && len(r.body) > 0 {
		return errors.New("304 with a body")
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 r.status,
		Header:                 r.header,
		Body:                   io.NopCloser(bytes.NewReader(r.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	if err != nil {
		return fmt.Errorf("response %d does not match the document: %w", r.status, err)
	}
	return nil
}

// bearerPresent accepts a request for a security scheme when it carries
// what the scheme asks for; the ingress verifies the token itself.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme := in.SecurityScheme
	if scheme == nil || scheme.Type != "http" || !strings.EqualFold(scheme.Scheme, "bearer") {
		return fmt.Errorf("security scheme %s is not a bearer token", in.SecuritySchemeName)
	}
	if !strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
		return errors.New("no bearer token")
	}
	return nil
}

// checkUnauthenticated replays, without its token, one request of every
// operation that requires one: the ingress must refuse it with 401, and
// that answer must be one the document declares.
func (c *contract) checkUnauthenticated(t *testing.T) {
	t.Helper()
	for _, key := range c.operations() {
		req, ok := c.sent[key]
		if !ok {
			continue
		}
		route, params := c.route(t, req)
		if !c.requiresToken(route.Operation) {
			// A public operation must not need the token it documents
			// as unnecessary. Those called without one (register, login)
			// have shown that already.
			if req.token != "" {
				req.token = ""
				r := call(t, req)
				if r.status == http.StatusUnauthorized {
					t.Errorf("%s is public in the document, but the ingress refuses it without a token: %s", key, r)
				}
				t.Logf("%s (public) without a token: %d", key, r.status)
			}
			continue
		}
		req.token = ""
		r := expect(t, http.StatusUnauthorized, req)
		input := &openapi3filter.RequestValidationInput{
			Request: nil, PathParams: params, Route: route,
			Options: &openapi3filter.Options{ExcludeRequestBody: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		}
		if input.Request, _ = sys.httpRequest(context.Background(), req); input.Request == nil {
			t.Fatal("request")
		}
		err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: input, Status: r.status, Header: r.header,
			Body:    io.NopCloser(bytes.NewReader(r.body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		})
		if err != nil {
			t.Errorf("%s without a token: the ingress answers %d, which the document does not declare: %v", key, r.status, err)
		}
	}
}
