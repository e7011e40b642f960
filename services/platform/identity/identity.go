// Package identity reads the caller the ingress verified from the identity
// headers of package contract: the ingress verifies the caller's token,
// strips any client-sent copies of those headers and sets them from the
// verified claims. Services trust them because they are reachable only
// through the mesh.
package identity

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"

	"github.com/portico-mesh/portico/services/platform/contract"

	"github.com/gofiber/fiber/v2"
)

// RoleAdmin may change any record and grant roles.
const RoleAdmin = "admin"

// Identity is the verified caller of a request. The zero value is an
// anonymous caller.
type Identity struct {
	UserID   string
	Username string
	Email    string
	Roles    []string
}

// Anonymous reports whether no verified caller is attached.
func (i Identity) Anonymous() bool { return i.UserID == "" }

// HasRole reports whether the caller holds role.
func (i Identity) HasRole(role string) bool { return slices.Contains(i.Roles, role) }

// IsAdmin reports whether the caller holds the admin role.
func (i Identity) IsAdmin() bool { return i.HasRole(RoleAdmin) }

// FromHeaders reads the identity from request headers.
func FromHeaders(get func(key string) string) Identity {
	id := Identity{
		UserID:   strings.TrimSpace(get(contract.HeaderUserID)),
		Username: strings.TrimSpace(get(contract.HeaderUsername)),
		Email:    strings.TrimSpace(get(contract.HeaderEmail)),
	}
	if id.UserID == "" {
		return Identity{}
	}
	id.Roles = ParseRoles(get(contract.HeaderRoles))
	return id
}

// ParseRoles reads a roles header: a comma-separated list, or the base64
// JSON array Envoy writes for an array claim.
func ParseRoles(value string) []string {
	value = strings.TrimSpace(value)
	if decoded, ok := decodeJSONArray(value); ok {
		return decoded
	}
	var roles []string
	for r := range strings.SplitSeq(value, ",") {
		if r = strings.TrimSpace(r); r != "" {
			roles = append(roles, r)
		}
	}
	return roles
}

// decodeJSONArray decodes base64 (padded or not, standard or URL
// alphabet) of a JSON array of strings. A plain role list never decodes
// to one: it would have to start with "[".
func decodeJSONArray(value string) ([]string, bool) {
	if value == "" {
		return nil, false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		raw, err := enc.DecodeString(value)
		if err != nil || len(raw) == 0 || raw[0] != '[' {
			continue
		}
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, false
		}
		roles := list[:0]
		for _, r := range list {
			if r = strings.TrimSpace(r); r != "" {
				roles = append(roles, r)
			}
		}
		return roles, true
	}
	return nil, false
}

// FromFiber reads the identity of a Fiber request. Strings are cloned so
// the identity may outlive the handler.
func FromFiber(c *fiber.Ctx) Identity {
	return FromHeaders(func(k string) string { return strings.Clone(c.Get(k)) })
}

// Set writes id as headers through set, for clients in tests and for
// anything that forwards an identity it has verified itself.
func Set(set func(key, value string), id Identity) {
	set(contract.HeaderUserID, id.UserID)
	set(contract.HeaderUsername, id.Username)
	set(contract.HeaderEmail, id.Email)
	set(contract.HeaderRoles, encodeRoles(id.Roles))
}

// encodeRoles writes roles as Envoy writes an array claim, base64 of a
// JSON array, so that they read back as they were: a comma-separated list
// splits a role that holds a comma, and a single role such as "W10=" would
// read as the base64 of an empty array.
func encodeRoles(roles []string) string {
	if len(roles) == 0 {
		return ""
	}
	raw, err := json.Marshal(roles)
	if err != nil {
		return "" // unreachable: a []string always marshals
	}
	return base64.StdEncoding.EncodeToString(raw)
}
