package system_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

type user struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
}

func userPath(id int64) string { return "/api/users/users/" + strconv.FormatInt(id, 10) }

// notStored fails unless r came from the origin: never HIT or STALE, no
// Age, the service's own Cache-Control.
func notStored(t *testing.T, what string, r reply, wantCacheControl string) {
	t.Helper()
	if x := r.xcache(); x == "HIT" || x == "STALE" {
		t.Errorf("%s: X-Cache %s: a stored response was served", what, x)
	}
	if age := r.header.Get("Age"); age != "" {
		t.Errorf("%s: Age %s on a response that must not be stored", what, age)
	}
	if cc := r.header.Get("Cache-Control"); cc != wantCacheControl {
		t.Errorf("%s: Cache-Control %q, want %q", what, cc, wantCacheControl)
	}
}

// User reads are private and no-store: never stored, never served to
// anyone else. With the default configuration they do not even pass the
// edge; an operator could route them through it, so the test does that
// too and checks the cache itself refuses to store them.
func TestPrivateReadsAreNeverStored(t *testing.T) {
	t.Run("DefaultRoutesUserReadsPastTheCache", func(t *testing.T) {
		for range 2 {
			r := expect(t, http.StatusOK, request{method: http.MethodGet, path: userPath(sys.alice.ID), token: sys.alice.Token})
			if x := r.xcache(); x != "" {
				t.Errorf("user read went through the cache (X-Cache %s) under the default configuration", x)
			}
			notStored(t, "alice reads herself", r, "private, no-store")
		}
	})

	t.Run("EdgeRefusesPrivateResponses", func(t *testing.T) {
		doc := defaultDocument(t)
		cached := false
		for i := range doc.Routes {
			if doc.Routes[i].Name == "users" {
				doc.Routes[i].Cache = true
				cached = true
			}
		}
		if !cached {
			t.Fatal("the default edge configuration has no route named users")
		}
		useEdgeConfig(t, doc)
		localenvtest.Eventually(t, 20*time.Second, 100*time.Millisecond, "user reads to pass the edge", func(context.Context) error {
			r := expect(t, http.StatusOK, request{method: http.MethodGet, path: userPath(sys.alice.ID), token: sys.alice.Token})
			if r.xcache() == "" {
				return fmt.Errorf("no X-Cache yet: %s", r)
			}
			return nil
		})
		// The edge's own count of responses it refused to store, whatever
		// the reason it names first (no-store or private).
		refusedBefore := edgeMetric(t, "edge_cache_not_stored_total", `upstream="users"`)
		reads := 0

		// Alice's record, read by alice and then by bob on the same URL
		// (refused to him); each user's own record; and the list, the same
		// URL for both (each sees only their own account).
		for round := range 3 {
			for _, c := range []struct {
				who    account
				path   string
				wantID int64
			}{
				{sys.alice, userPath(sys.alice.ID), sys.alice.ID},
				// Not bob's to read at all (403): the URL alice's read
				// went to must not hand him her record either.
				{sys.bob, userPath(sys.alice.ID), 0},
				{sys.bob, userPath(sys.bob.ID), sys.bob.ID},
				{sys.alice, userPath(sys.alice.ID), sys.alice.ID},
			} {
				what := fmt.Sprintf("round %d: %s GET %s", round, c.who.Username, c.path)
				if c.wantID == 0 {
					r := expect(t, http.StatusForbidden, request{method: http.MethodGet, path: c.path, token: c.who.Token})
					notStored(t, what, r, "no-store")
					continue
				}
				r := expect(t, http.StatusOK, request{method: http.MethodGet, path: c.path, token: c.who.Token})
				reads++
				if r.xcache() != "MISS" && r.xcache() != "BYPASS" {
					t.Errorf("%s: X-Cache %q, want MISS or BYPASS", what, r.xcache())
				}
				notStored(t, what, r, "private, no-store")
				if got := decode[user](t, r.body); got.ID != c.wantID {
					t.Errorf("%s: user %d in the body, want %d", what, got.ID, c.wantID)
				}
			}
			for _, who := range []account{sys.alice, sys.bob} {
				r := expect(t, http.StatusOK, request{method: http.MethodGet, path: "/api/users/users?limit=5", token: who.Token})
				reads++
				notStored(t, fmt.Sprintf("round %d: %s lists users", round, who.Username), r, "private, no-store")
			}
		}
		if refused := edgeMetric(t, "edge_cache_not_stored_total", `upstream="users"`) - refusedBefore; refused < float64(reads) {
			t.Errorf("the edge refused to store %v of %d user reads, want all", refused, reads)
		}
	})

	t.Run("NoStoreErrorsAreNotStored", func(t *testing.T) {
		// A missing product passes the cache (a cached route) and the
		// service answers 404 no-store: 404s are storable, this one not.
		path := productPath(1 << 40)
		for range 3 {
			r := expect(t, http.StatusNotFound, request{method: http.MethodGet, path: path, token: sys.alice.Token})
			if r.xcache() != "MISS" {
				t.Errorf("404 no-store: X-Cache %q, want MISS", r.xcache())
			}
			notStored(t, "404 of a missing product", r, "no-store")
		}
	})
}
