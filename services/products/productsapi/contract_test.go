package productsapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/go-cmp/cmp"

	"github.com/portico-mesh/portico/services/products/productsapi"
)

// contractHost stands for every test server: requests are matched against
// the document with this host, whatever port their server listens on.
const contractHost = "products.test"

// contract checks every response the API tests receive against the OpenAPI
// document and records which operations they exercised.
var contract = newContract()

type contractChecker struct {
	doc    *openapi3.T
	router routers.Router
	err    error

	mu        sync.Mutex
	exercised map[string]bool
}

func newContract() *contractChecker {
	doc, err := productsapi.OpenAPIDocument()
	if err != nil {
		return &contractChecker{err: err}
	}
	doc.Servers = openapi3.Servers{{URL: "http://" + contractHost}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return &contractChecker{err: err}
	}
	return &contractChecker{doc: doc, router: router, exercised: map[string]bool{}}
}

// check validates one exchange: the route and status must be documented
// and the response (headers and body) must match its description. For a
// successful response the request must match too: what the service
// accepts, the document must allow.
func (c *contractChecker) check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	if c.err != nil {
		return c.err
	}
	r := req.Clone(context.Background())
	r.URL.Scheme, r.URL.Host, r.Host = "http", contractHost, contractHost
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		return fmt.Errorf("%s %s is not in the OpenAPI document: %w", req.Method, req.URL.Path, err)
	}
	c.mu.Lock()
	c.exercised[route.Operation.OperationID] = true
	c.mu.Unlock()

	if route.Operation.Responses.Status(resp.StatusCode) == nil {
		return fmt.Errorf("%s: status %d is not documented", route.Operation.OperationID, resp.StatusCode)
	}
	if resp.StatusCode == http.StatusNotModified && len(respBody) > 0 {
		return fmt.Errorf("%s: 304 with a body", route.Operation.OperationID)
	}
	reqInput := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if resp.StatusCode < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), reqInput); err != nil {
			return fmt.Errorf("%s: the service accepted a request the document forbids: %w", route.Operation.OperationID, err)
		}
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(respBody)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	if err != nil {
		return fmt.Errorf("%s: response %d does not match the document: %w", route.Operation.OperationID, resp.StatusCode, err)
	}
	return nil
}

// checkCoverage reports operations of the document no test exercised. It
// runs after a complete, successful run only: a -run subset proves nothing.
func (c *contractChecker) checkCoverage() int {
	for _, name := range []string{"test.run", "test.skip"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return 0
		}
	}
	if c.err != nil {
		fmt.Fprintln(os.Stderr, "contract:", c.err)
		return 1
	}
	var missing []string
	for _, op := range documentedOperations(c.doc) {
		if !c.exercised[op.id] {
			missing = append(missing, op.id)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "contract: operations never exercised by the API tests: %s\n", strings.Join(missing, ", "))
		return 1
	}
	return 0
}

type operation struct {
	id, method, path string
}

func documentedOperations(doc *openapi3.T) []operation {
	var ops []operation
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, operation{id: op.OperationID, method: method, path: path})
		}
	}
	slices.SortFunc(ops, func(a, b operation) int { return strings.Compare(a.method+" "+a.path, b.method+" "+b.path) })
	return ops
}

// contractTransport checks every exchange of a test's client.
type contractTransport struct {
	t    *testing.T
	base http.RoundTripper
}

func (ct *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body.Close()
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := ct.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if err := contract.check(req, reqBody, resp, respBody); err != nil {
		ct.t.Errorf("OpenAPI contract: %v", err)
	}
	return resp, nil
}

// The routes the service mounts and the operations the document describes
// are the same set.
func TestEveryRouteIsDocumented(t *testing.T) {
	if contract.err != nil {
		t.Fatal(contract.err)
	}
	var mounted []string
	for _, r := range productsapi.Routes(productsapi.Config{}) {
		path := r.Path
		if strings.Contains(path, "/:") {
			parts := strings.Split(path, "/")
			for i, p := range parts {
				if name, ok := strings.CutPrefix(p, ":"); ok {
					parts[i] = "{" + name + "}"
				}
			}
			path = strings.Join(parts, "/")
		}
		mounted = append(mounted, r.Method+" "+path)
	}
	var documented []string
	for _, op := range documentedOperations(contract.doc) {
		documented = append(documented, op.method+" "+op.path)
	}
	slices.Sort(mounted)
	slices.Sort(documented)
	if diff := cmp.Diff(documented, mounted); diff != "" {
		t.Errorf("mounted routes differ from the document (-documented +mounted):\n%s", diff)
	}
}

func TestOpenAPIDocumentIsServed(t *testing.T) {
	s := startService(t)
	r := s.must(t, http.StatusOK, http.MethodGet, "/openapi.json", "")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type %q", ct)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(r.body)
	if err != nil {
		t.Fatalf("served document does not load: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("served document is invalid: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	want, err := productsapi.OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got, wantDoc any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &wantDoc); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantDoc, got); diff != "" {
		t.Errorf("served document differs from the embedded one:\n%s", diff)
	}
	// Every operation that needs a caller says so.
	for _, op := range documentedOperations(contract.doc) {
		o := contract.doc.Paths.Find(op.path).GetOperation(op.method)
		needsCaller := op.method != http.MethodGet
		if hasSecurity := o.Security != nil && len(*o.Security) > 0; hasSecurity != needsCaller {
			t.Errorf("%s: security requirement present = %v, want %v", op.id, hasSecurity, needsCaller)
		}
	}
}
