package identity_test

import (
	"slices"
	"testing"

	"github.com/portico-mesh/portico/services/platform/identity"
)

func TestParseRoles(t *testing.T) {
	for value, want := range map[string][]string{
		"":                         nil,
		"user":                     {"user"},
		" user , admin ,":          {"user", "admin"},
		"WyJ1c2VyIiwiYWRtaW4iXQ==": {"user", "admin"}, // Envoy: base64 of ["user","admin"]
		"WyJ1c2VyIiwiYWRtaW4iXQ":   {"user", "admin"},
		"W10=":                     {},           // []
		"dXNlcg==":                 {"dXNlcg=="}, // base64 of "user": not an array, so a role name
	} {
		got := identity.ParseRoles(value)
		if (len(got) != 0 || len(want) != 0) && !slices.Equal(got, want) {
			t.Errorf("ParseRoles(%q) = %q, want %q", value, got, want)
		}
	}
}
