package identity_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/identity"
)

// FuzzFromHeaders: whatever the identity headers hold, the identity read
// from them is anonymous without a user id (and then has nothing else),
// its roles are trimmed and non-empty, and writing it with Set and reading
// it back gives the same identity. Roles arrive comma-separated or, as
// Envoy's jwt_authn writes an array claim, as base64 of a JSON array.
// Seeds: f.Add below and testdata/fuzz/FuzzFromHeaders.
func FuzzFromHeaders(f *testing.F) {
	f.Add("1", "alice", "alice@example.com", "user,admin")
	f.Add(" 7 ", " bob ", "", " user , admin ,")
	f.Add("2", "carol", "c@example.com", "WyJ1c2VyIiwiYWRtaW4iXQ==") // ["user","admin"]
	f.Add("3", "dave", "", "WyJ1c2VyIiwiYWRtaW4iXQ")
	f.Add("4", "erin", "", "W10=")                    // []
	f.Add("5", "frank", "", "WyJhLGIiLCIgYyAiLCIiXQ") // ["a,b"," c ",""]
	f.Add("", "mallory", "", "admin")
	f.Add("6", "", "", "dXNlcg==") // base64 of "user": not an array
	f.Fuzz(func(t *testing.T, userID, username, email, roles string) {
		h := http.Header{}
		h.Set(contract.HeaderUserID, userID)
		h.Set(contract.HeaderUsername, username)
		h.Set(contract.HeaderEmail, email)
		h.Set(contract.HeaderRoles, roles)
		id := identity.FromHeaders(h.Get)
		if strings.TrimSpace(userID) == "" {
			if !id.Anonymous() || id.Username != "" || id.Email != "" || len(id.Roles) != 0 {
				t.Fatalf("no user id, yet the identity is %+v", id)
			}
		} else if id.Anonymous() {
			t.Fatalf("user id %q read as anonymous", userID)
		}
		for _, r := range id.Roles {
			if r == "" || r != strings.TrimSpace(r) {
				t.Fatalf("role %q of %q is empty or untrimmed", r, roles)
			}
		}
		if got := identity.ParseRoles(roles); !slices.Equal(got, identity.ParseRoles(roles)) {
			t.Fatalf("ParseRoles(%q) is not deterministic", roles)
		}
		// Header values are text: Set cannot promise more than valid
		// UTF-8 without line breaks back (RFC 9110 section 5.5).
		for _, s := range []string{userID, username, email, roles} {
			if !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\r\n") {
				return
			}
		}
		written := http.Header{}
		identity.Set(written.Set, id)
		again := identity.FromHeaders(written.Get)
		if again.UserID != id.UserID || again.Username != id.Username || again.Email != id.Email ||
			!slices.Equal(again.Roles, id.Roles) && (len(again.Roles) != 0 || len(id.Roles) != 0) {
			t.Fatalf("%+v was written as %q and read back as %+v", id, written, again)
		}
	})
}

// TestSetWritesRolesThatReadBack: the fuzzer's find. Set joined roles
// with commas, so a role holding a comma (possible in Envoy's array form)
// came back as two, and a role that is itself base64 of a JSON array
// came back as that array's roles.
func TestSetWritesRolesThatReadBack(t *testing.T) {
	for _, roles := range [][]string{{"a,b", "c"}, {"W10="}, {"WyJhZG1pbiJd"}, {"user", "admin"}, {"<&>"}} {
		h := http.Header{}
		identity.Set(h.Set, identity.Identity{UserID: "1", Roles: roles})
		if got := identity.FromHeaders(h.Get).Roles; !slices.Equal(got, roles) {
			t.Errorf("roles %q were written as %q and read back as %q", roles, h.Get(contract.HeaderRoles), got)
		}
	}
}
