package system_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	platform "github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/identity"
)

// Writes are not the edge's: the intentions (mesh/entries, default deny)
// let the edge read products and nothing else, so a write sent to the
// edge is refused at the products sidecar, and the edge passes the
// refusal on without caching anything. Sent to the edge's own listener
// directly, as only a misrouted ingress would.
func TestEdgeWritesAreRefusedByIntentions(t *testing.T) {
	p, _ := createProduct(t, sys.alice, "Edge write "+randomHex(4))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, sys.edgeURL+"/products/"+strconv.FormatInt(p.ID, 10), strings.NewReader(`{"name": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(platform.HeaderUpstream, "products")
	identity.Set(req.Header.Set, identity.Identity{UserID: "1", Username: "alice", Roles: []string{"user"}})
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("PUT through the edge: %d, want 403 from the products sidecar", resp.StatusCode)
	}
	if x := resp.Header.Get("X-Cache"); x != "BYPASS" {
		t.Errorf("PUT through the edge: X-Cache %q, want BYPASS", x)
	}
	// The product is unchanged.
	if r := expect(t, http.StatusOK, request{method: http.MethodGet, path: productPath(p.ID), token: sys.alice.Token}); decode[product](t, r.body).Name != p.Name {
		t.Errorf("the refused write changed the product: %s", r)
	}
}
