package system_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// view is one cached read of a product: the item or a list holding it.
type view struct {
	name string
	path string
	// nameIn sets name to the product's name as the view shows it, or ""
	// if the product is not in it.
	nameIn func(body []byte, name *string) error
}

func productViews(p product) []view {
	item := func(body []byte, name *string) error {
		var q product
		err := decodeInto(body, &q)
		*name = q.Name
		return err
	}
	inList := func(body []byte, name *string) error {
		var page productPage
		if err := decodeInto(body, &page); err != nil {
			return err
		}
		*name = ""
		if i := slices.IndexFunc(page.Items, func(q product) bool { return q.ID == p.ID }); i >= 0 {
			*name = page.Items[i].Name
		}
		return nil
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
	views := productViews(p)

	// Every view cached (MISS then HIT) and showing the old name.
	var etag string
	for _, v := range views {
		localenvtest.Eventually(t, 10*time.Second, 100*time.Millisecond, v.name+" cached", func(context.Context) error {
			r := expect(t, http.StatusOK, request{method: http.MethodGet, path: v.path, token: token})
			if got := nameOf(t, v, r); got != p.Name {
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

	// Each view is polled by a client of its own, so one view's requests
	// do not delay another's measurement. A view that once showed the
	// new name must never show the old one again.
	freshAfter := make([]time.Duration, len(views))
	stale := make([]int, len(views))
	errs := make([]error, len(views))
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, v := range views {
		wg.Go(func() { freshAfter[i], stale[i], errs[i] = waitFresh(ctx, v, answered, p.Name, newName, token) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	all := time.Duration(0)
	for _, d := range freshAfter {
		all = max(all, d)
	}
	waitPurgesAfter(t, purgesBefore, "the update event to be counted")
	lag := (edgeMetric(t, "edge_purge_lag_seconds_sum") - lagSum) / max(1, edgeMetric(t, "edge_purge_lag_seconds_count")-lagCount)
	var perView []string
	for i, v := range views {
		perView = append(perView, fmt.Sprintf("%s %v after %d stale reads", v.name, freshAfter[i].Round(100*time.Microsecond), stale[i]))
	}
	t.Logf("PUT response -> fresh data on all %d views: %v (%s); edge purge lag (commit -> purge): %.1f ms",
		len(views), all.Round(100*time.Microsecond), strings.Join(perView, ", "), lag*1000)

	// The update changed the representation: the old ETag matches no more.
	if r := expect(t, http.StatusOK, request{method: http.MethodGet, path: productPath(p.ID), token: token,
		header: map[string]string{"If-None-Match": etag}}); r.header.Get("ETag") == etag {
		t.Errorf("the ETag before the update %s still matches after it", etag)
	}

	// After the purge the views are cached again, with the new data.
	for _, v := range views {
		localenvtest.Eventually(t, 5*time.Second, 50*time.Millisecond, v.name+" cached again", func(context.Context) error {
			r := expect(t, http.StatusOK, request{method: http.MethodGet, path: v.path, token: token})
			if got := nameOf(t, v, r); got != newName {
				t.Fatalf("%s shows %q after the purge, want %q", v.name, got, newName)
			}
			if r.xcache() != "HIT" {
				return fmt.Errorf("X-Cache %q", r.xcache())
			}
			return nil
		})
	}
}

// waitFresh reads v every 2 ms until it shows newName and returns how long
// after since that took and how many reads still showed oldName.
func waitFresh(ctx context.Context, v view, since time.Time, oldName, newName, token string) (time.Duration, int, error) {
	stale := 0
	for {
		r, err := sys.send(ctx, request{method: http.MethodGet, path: v.path, token: token})
		if err != nil {
			return 0, stale, fmt.Errorf("%s: %w (after %d stale reads)", v.name, err, stale)
		}
		if r.status != http.StatusOK {
			return 0, stale, fmt.Errorf("%s: %s", v.name, r)
		}
		var got string
		if err := v.nameIn(r.body, &got); err != nil {
			return 0, stale, fmt.Errorf("%s: %w", v.name, err)
		}
		switch got {
		case newName:
			return time.Since(since), stale, nil
		case oldName:
			stale++
		default:
			return 0, stale, fmt.Errorf("%s shows %q", v.name, got)
		}
		select {
		case <-ctx.Done():
			return 0, stale, fmt.Errorf("%s still stale: %w (%d stale reads)", v.name, ctx.Err(), stale)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func nameOf(t *testing.T, v view, r reply) string {
	t.Helper()
	var name string
	if err := v.nameIn(r.body, &name); err != nil {
		t.Fatalf("%s: %v", v.name, err)
	}
	return name
}
