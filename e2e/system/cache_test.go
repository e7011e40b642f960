package system_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
)

// product is the part of a product the tests look at.
type product struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Price any    `json:"price"`
}

type productPage struct {
	Items []product `json:"items"`
}

func productPath(id int64) string { return "/api/products/products/" + strconv.FormatInt(id, 10) }

// createProduct creates a product through the ingress as a.
func createProduct(t *testing.T, a account, name string) (product, string) {
	t.Helper()
	r := expect(t, http.StatusCreated, request{method: http.MethodPost, path: "/api/products/products", token: a.Token,
		body: fmt.Sprintf(`{"name": %q, "description": "made by e2e/system", "price": "19.99", "stock_quantity": 5}`, name)})
	return decode[product](t, r.body), r.header.Get("ETag")
}

// A product read through the ingress is a MISS, then a HIT with an Age;
// If-None-Match with its ETag answers 304.
func TestProductReadIsCachedAndRevalidated(t *testing.T) {
	before := appliedPurges(t)
	p, _ := createProduct(t, sys.alice, "Cached "+randomHex(4))
	// The creation event purges the product's views: let it pass, or it
	// could remove the entry between the MISS and the HIT below.
	waitPurgesAfter(t, before, "the creation event to be consumed")
	item := request{method: http.MethodGet, path: productPath(p.ID), token: sys.alice.Token}
	miss := expect(t, http.StatusOK, item)
	if miss.xcache() != "MISS" {
		t.Fatalf("first read: X-Cache %q, want MISS", miss.xcache())
	}
	hit := expect(t, http.StatusOK, item)
	if hit.xcache() != "HIT" {
		t.Fatalf("second read: X-Cache %q, want HIT", hit.xcache())
	}
	if age := hit.header.Get("Age"); age == "" {
		t.Errorf("HIT without an Age header")
	} else if n, err := strconv.Atoi(age); err != nil || n < 0 || n > 60 {
		t.Errorf("Age %q is not a number of seconds within max-age", age)
	}
	if string(hit.body) != string(miss.body) {
		t.Errorf("HIT body differs from the MISS body:\n%s\n%s", hit.body, miss.body)
	}
	// The cache's tags are the edge's business, never the client's.
	for _, r := range []reply{miss, hit} {
		if sk := r.header.Get("Surrogate-Key"); sk != "" {
			t.Errorf("Surrogate-Key %q reached the client (X-Cache %s)", sk, r.xcache())
		}
	}
	// A public response is shared: another user's read is a HIT too.
	if shared := expect(t, http.StatusOK, request{method: http.MethodGet, path: productPath(p.ID), token: sys.bob.Token}); shared.xcache() != "HIT" {
		t.Errorf("bob's read of alice's cached product: X-Cache %q, want HIT", shared.xcache())
	}
	etag := miss.header.Get("ETag")
	if etag == "" {
		t.Fatal("product read without an ETag")
	}
	notModified := call(t, request{method: http.MethodGet, path: productPath(p.ID), token: sys.bob.Token, header: map[string]string{"If-None-Match": etag}})
	if notModified.status != http.StatusNotModified || len(notModified.body) != 0 {
		t.Fatalf("If-None-Match %s: %s, want 304 without a body", etag, notModified)
	}
	if notModified.xcache() != "HIT" {
		t.Errorf("304: X-Cache %q, want HIT (answered from the cache)", notModified.xcache())
	}
	if notModified.header.Get("ETag") != etag {
		t.Errorf("304 ETag %q, want %q", notModified.header.Get("ETag"), etag)
	}
	t.Logf("MISS %v, HIT %v (Age %s), 304 (%s) %v", miss.took, hit.took, hit.header.Get("Age"), notModified.xcache(), notModified.took)
}
