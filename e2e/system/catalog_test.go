package system_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// The merged document follows the catalog: a service that leaves it
// leaves the document, and comes back with it. The edge registers itself
// without an API document of its own.
func TestMergedDocumentFollowsTheCatalog(t *testing.T) {
	entries, _, err := sys.consulAPI.Catalog().Service("edge", "", (&api.QueryOptions{}).WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("edge in the catalog: %d entries, want 1", len(entries))
	}
	if doc := entries[0].ServiceMeta[apidocs.MetaKey]; doc != "" {
		t.Errorf("the edge registered an API document of its own: %s=%q", apidocs.MetaKey, doc)
	}

	doc := expect(t, http.StatusOK, request{method: http.MethodGet, path: "/openapi.json"})
	if err := apidocs.Validate(doc.body); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"/api/users/login"`, `"/api/products/products/{id}"`, `"bearerAuth"`} {
		if !strings.Contains(string(doc.body), want) {
			t.Errorf("merged document lacks %s", want)
		}
	}

	// A service's own document still goes to the service when the
	// ingress routes it there (through the edge, on a cached route).
	own := expect(t, http.StatusOK, request{method: http.MethodGet, path: "/api/products/openapi.json", token: sys.alice.Token})
	if !strings.Contains(string(own.body), `"title":"Portico Products"`) {
		t.Errorf("products' own document was not proxied: %.200s", own.body)
	}

	// users leaves the catalog (a graceful stop deregisters it)...
	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := sys.users.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	restart := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		restarted = true
		if err := sys.users.Start(ctx); err != nil {
			t.Fatalf("restart users: %v", err)
		}
		// Later tests need users behind the ingress again.
		if err := stack.WaitOK(ctx, sys.ingressURL+"/api/users/.well-known/jwks.json", `"keys"`); err != nil {
			t.Fatalf("users behind the ingress again: %v", err)
		}
	}
	t.Cleanup(func() {
		if !restarted {
			restart()
		}
	})
	document := func(ctx context.Context) (string, error) {
		r, err := sys.send(ctx, request{method: http.MethodGet, path: "/openapi.json"})
		if err != nil {
			return "", err
		}
		if r.status != http.StatusOK {
			return "", fmt.Errorf("GET /openapi.json: %s", r)
		}
		return string(r.body), nil
	}
	localenvtest.Eventually(t, 30*time.Second, 100*time.Millisecond, "users to leave the merged document", func(ctx context.Context) error {
		doc, err := document(ctx)
		if err != nil {
			return err
		}
		if strings.Contains(doc, `"/api/users/login"`) || !strings.Contains(doc, `"/api/products/products"`) {
			return fmt.Errorf("users still in the document, or products gone: %.200s", doc)
		}
		return nil
	})

	// ...and comes back.
	restart()
	localenvtest.Eventually(t, 30*time.Second, 100*time.Millisecond, "users back in the merged document", func(ctx context.Context) error {
		doc, err := document(ctx)
		if err != nil {
			return err
		}
		if !strings.Contains(doc, `"/api/users/login"`) || !strings.Contains(doc, `"/api/products/products"`) {
			return fmt.Errorf("not both services: %.200s", doc)
		}
		return nil
	})
}
