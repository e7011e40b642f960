package system_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// view is one cached read of a product: the item or a list holding it.
type view struct {
	name string
	path string
	// nameIn returns the product's name as the view shows it, or "" if
	// the product is not in it.
	nameIn func(t *testing.T, body []byte) string
}

func productViews(p product, token string) []view {
	item := func(t *testing.T, body []byte) string { return decode[product](t, body).Name }
	inList := func(t *testing.T, body []byte) string {
		page := decode[productPage](t, body)
		i := slices.IndexFunc(page.Items, func(q product) bool { return q.ID == p.ID })
		if i < 0 {
			return ""
		}
		return page.Items[i].Name
	}
	marker := strings.Fields(p.Name)[1] // unique per product, kept by the rename
	return []view{
		{"item", productPath(p.ID), item},
		{"list filtered by name", "/api/products/products?name=" + url.QueryEscape(marker), inList},
		{"list of 100", "/api/products/products?limit=100", inList},
	}
}

// A product update through the ingress is followed, once its event is
// consumed, by fresh data on every cached view of it: the item and the
// lists. The time from the PUT's response to fresh data on all views is
// what a client waits at most; the edge's own purge lag (commit to purge)
// is printed beside it.
func TestProductUpdatePurgesEveryCachedView(t *testing.T) {
	marker := randomHex(4)
	before := appliedPurges(t)
	p, _ := createProduct(t, sys.alice, "Purge "+marker)
	waitPurgesAfter(t, before, "the creation event to be consumed")
	token := sys.alice.Token
	views := productViews(p, token)

	// Every view cached (MISS then HIT) and showing the old name.
	var etag string
	for _, v := range views {
		eventuallyEvery(t, 10*time.Second, 100*time.Millisecond, v.name+" cached", func() error {
			r := expect(t, http.StatusOK, request{method: http.MethodGet, path: v.path, token: token})
			if got := v.nameIn(t, r.body); got != p.Name {
				t.Fatalf("%s shows %q before the update, want %q", v.name, got, p.Name)
			}
			if v.name == "item" {
				etag = r.header.Get("ETag")
			}
			if r.xcache() != "HIT" {
				return fmt.Errorf("X-Cache %q", r.xcache())
			}
			return nil
		})
	}

	purgesBefore := appliedPurges(t)
	lagSum, lagCount := edgeMetric(t, "edge_purge_lag_seconds_sum"), edgeMetric(t, "edge_purge_lag_seconds_count")
	newName := "Purge " + marker + " v2"
	put := expect(t, http.StatusOK, request{method: http.MethodPut, path: productPath(p.ID), token: token,
		header: map[string]string{"If-Match": etag}, body: fmt.Sprintf(`{"name": %q, "price": "29.99"}`, newName)})
	answered := time.Now()
	if got := decode[product](t, put.body).Name; got != newName {
		t.Fatalf("PUT answered name %q, want %q", got, newName)
	}

	// Poll every view until each shows the new name; a view that once
	// showed it must never show the old one again.
	freshAfter := map[string]time.Duration{}
	stale := 0
	deadline := answered.Add(15 * time.Second)
	for len(freshAfter) < len(views) {
		if time.Now().After(deadline) {
			t.Fatalf("not every view fresh 15 s after the update: fresh %v, %d stale reads", freshAfter, stale)
		}
		for _, v := range views {
			r := expect(t, http.StatusOK, request{method: http.MethodGet, path: v.path, token: token})
			got := v.nameIn(t, r.body)
			switch got {
			case newName:
				if _, seen := freshAfter[v.name]; !seen {
					freshAfter[v.name] = time.Since(answered)
				}
			case p.Name:
				if _, seen := freshAfter[v.name]; seen {
					t.Fatalf("%s showed the old name again (X-Cache %s) after showing the new one", v.name, r.xcache())
				}
				stale++
			default:
				t.Fatalf("%s shows %q", v.name, got)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	all := time.Duration(0)
	for _, d := range freshAfter {
		all = max(all, d)
	}
	waitPurgesAfter(t, purgesBefore, "the update event to be counted")
	lag := (edgeMetric(t, "edge_purge_lag_seconds_sum") - lagSum) / max(1, edgeMetric(t, "edge_purge_lag_seconds_count")-lagCount)
	t.Logf("PUT response -> fresh data on all %d views: %v (per view %v; %d stale reads while the event was in flight); edge purge lag (commit -> purge): %.1f ms",
		len(views), all.Round(100*time.Microsecond), freshAfter, stale, lag*1000)

	// After the purge the views are cached again, with the new data.
	for _, v := range views {
		eventuallyEvery(t, 5*time.Second, 50*time.Millisecond, v.name+" cached again", func() error {
			r := expect(t, http.StatusOK, request{method: http.MethodGet, path: v.path, token: token})
			if got := v.nameIn(t, r.body); got != newName {
				t.Fatalf("%s shows %q after the purge, want %q", v.name, got, newName)
			}
			if r.xcache() != "HIT" {
				return fmt.Errorf("X-Cache %q", r.xcache())
			}
			return nil
		})
	}
}
