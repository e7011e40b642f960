package apidocs_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/services/platform/page"
	"github.com/portico-mesh/portico/services/products/productsapi"
	"github.com/portico-mesh/portico/services/users/usersapi"
)

// serviceSpecs are the two services' real documents, as they serve them.
func serviceSpecs(t *testing.T) []apidocs.Spec {
	t.Helper()
	products, err := productsapi.OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	usersDoc, err := usersapi.OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	users, err := json.Marshal(usersDoc)
	if err != nil {
		t.Fatal(err)
	}
	return []apidocs.Spec{
		{Service: "users", Path: "/openapi.json", Document: users},
		{Service: "products", Path: "/openapi.json", Document: products},
	}
}

func TestMergeServicesAsClientsCallThem(t *testing.T) {
	merged, err := apidocs.Merge(serviceSpecs(t))
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(merged)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("merged document is not valid OpenAPI 3: %v", err)
	}

	var paths []string
	for p := range doc.Paths.Map() {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	want := []string{
		"/api/products/products", "/api/products/products/{id}",
		"/api/users/.well-known/jwks.json", "/api/users/login",
		"/api/users/users", "/api/users/users/{id}",
	}
	if !slices.Equal(paths, want) {
		t.Fatalf("paths %v, want %v", paths, want)
	}

	public := map[string]bool{
		"POST /api/users/users":                true,
		"POST /api/users/login":                true,
		"GET /api/users/.well-known/jwks.json": true,
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			key := method + " " + path
			isPublic := op.Security != nil && len(*op.Security) == 0
			if isPublic != public[key] {
				t.Errorf("%s: public = %v, want %v", key, isPublic, public[key])
			}
		}
	}
	if len(doc.Security) != 1 || doc.Security[0][apidocs.BearerScheme] == nil {
		t.Errorf("global security = %v, want the bearer scheme", doc.Security)
	}
	scheme := doc.Components.SecuritySchemes[apidocs.BearerScheme]
	if scheme == nil || scheme.Value.Type != "http" || scheme.Value.Scheme != "bearer" {
		t.Errorf("bearer scheme = %+v", scheme)
	}
	if len(doc.Components.SecuritySchemes) != 1 {
		t.Errorf("the services' identity-header schemes leaked: %v", doc.Components.SecuritySchemes)
	}
	for name := range doc.Components.Schemas {
		if !strings.HasPrefix(name, "users.") && !strings.HasPrefix(name, "products.") && !strings.HasPrefix(name, "portico.") {
			t.Errorf("schema %s is not prefixed by its service (or portico. for the ingress's own)", name)
		}
	}
	// The ingress's own answers are documented as problems: 401 where a
	// token is required, the others everywhere; 429 with Retry-After.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			key := method + " " + path
			for _, status := range []int{404, 405, 413, 429, 431, 503} {
				r := op.Responses.Status(status)
				if r == nil {
					t.Errorf("%s: no %d", key, status)
					continue
				}
				if r.Value.Content.Get("application/problem+json") == nil {
					t.Errorf("%s: %d is not a problem", key, status)
				}
			}
			if has401 := op.Responses.Status(401) != nil; !public[key] && !has401 {
				t.Errorf("%s needs a token but documents no 401", key)
			}
			if h := op.Responses.Status(429).Value.Headers["Retry-After"]; h == nil || !h.Value.Required {
				t.Errorf("%s: 429 without a required Retry-After", key)
			}
		}
	}
	if strings.Contains(string(merged), `"Surrogate-Key"`) {
		t.Error("the merged document tells clients of Surrogate-Key, which the edge removes")
	}
	// References resolve to the renamed components.
	op := doc.Paths.Find("/api/products/products/{id}").GetOperation(http.MethodGet)
	ref := op.Responses.Status(200).Value.Content.Get("application/json").Schema.Ref
	if ref != "#/components/schemas/products.Product" {
		t.Errorf("product schema ref = %q", ref)
	}
}

func TestMergeRejectsBrokenInput(t *testing.T) {
	if _, err := apidocs.Merge(nil); err == nil {
		t.Error("merged nothing")
	}
	broken := []apidocs.Spec{{Service: "x", Document: []byte(`{"openapi":"3.0.3","info":{"title":"x","version":"1"},
		"paths":{"/a":{"get":{"responses":{"200":{"$ref":"#/components/responses/Missing"}}}}}}`)}}
	if _, err := apidocs.Merge(broken); err == nil {
		t.Error("a dangling reference was accepted")
	}
	swagger2 := []apidocs.Spec{{Service: "x", Document: []byte(`{"swagger":"2.0"}`)}}
	if _, err := apidocs.Merge(swagger2); err == nil {
		t.Error("Swagger 2 was accepted")
	}
}

// Every cursor parameter of the services' documents is page's cursor
// pattern, the exact set of cursors the services accept.
func TestCursorParametersUsePagesPattern(t *testing.T) {
	merged, err := apidocs.Merge(serviceSpecs(t))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(merged)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			p := op.Parameters.GetByInAndName("query", page.ParamCursor)
			if p == nil {
				continue
			}
			seen++
			if got := p.Schema.Value.Pattern; got != page.CursorPattern {
				t.Errorf("%s %s: cursor pattern %q, want page.CursorPattern", method, path, got)
			}
		}
	}
	if seen < 2 {
		t.Errorf("%d cursor parameters, want one per list operation (2)", seen)
	}
}

// Two services with the same operationId: the second is renamed, and the
// links of its document follow it.
func TestMergeRenamesLinkTargetsWithTheirOperation(t *testing.T) {
	doc := func(service string) apidocs.Spec {
		return apidocs.Spec{Service: service, Document: []byte(`{"openapi":"3.0.3","info":{"title":"x","version":"1"},"paths":{
			"/things":{"post":{"operationId":"createThing","responses":{"201":{"description":"created",
				"links":{"GetThing":{"operationId":"getThing","parameters":{"id":"$response.body#/id"}}}}}}},
			"/things/{id}":{"get":{"operationId":"getThing","parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"integer"}}],
				"responses":{"200":{"description":"the thing"}}}}}}`)}
	}
	merged, err := apidocs.Merge([]apidocs.Spec{doc("alpha"), doc("beta")})
	if err != nil {
		t.Fatal(err)
	}
	d, err := openapi3.NewLoader().LoadFromData(merged)
	if err != nil {
		t.Fatal(err)
	}
	for _, service := range []string{"alpha", "beta"} {
		want := "getThing"
		if service == "beta" {
			want = "beta.getThing"
		}
		get := d.Paths.Find("/api/" + service + "/things/{id}").Get
		if get.OperationID != want {
			t.Errorf("%s: operationId %q, want %q", service, get.OperationID, want)
		}
		link := d.Paths.Find("/api/" + service + "/things").Post.Responses.Status(201).Value.Links["GetThing"]
		if link == nil || link.Value.OperationID != want {
			t.Errorf("%s: link to %+v, want %q", service, link, want)
		}
	}
}
