// Package identity is the contract between the ingress and the services:
// the ingress verifies the caller's token, strips any client-sent copies of
// these headers, and sets them from the verified claims. Services trust
// them because they are reachable only through the mesh.
package identity

import (
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Headers set by the ingress from a verified token.
const (
	HeaderUserID   = "X-Portico-User-Id"  // the token's sub claim
	HeaderUsername = "X-Portico-Username" // the username claim
	HeaderEmail    = "X-Portico-Email"    // the email claim
	HeaderRoles    = "X-Portico-Roles"    // the roles claim, comma-separated
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
		UserID:   strings.TrimSpace(get(HeaderUserID)),
		Username: strings.TrimSpace(get(HeaderUsername)),
		Email:    strings.TrimSpace(get(HeaderEmail)),
	}
	if id.UserID == "" {
		return Identity{}
	}
	for r := range strings.SplitSeq(get(HeaderRoles), ",") {
		if r = strings.TrimSpace(r); r != "" {
			id.Roles = append(id.Roles, r)
		}
	}
	return id
}

// FromFiber reads the identity of a Fiber request. Strings are cloned so
// the identity may outlive the handler.
func FromFiber(c *fiber.Ctx) Identity {
	return FromHeaders(func(k string) string { return strings.Clone(c.Get(k)) })
}

// Set writes id as headers through set, for clients in tests and for
// anything that forwards an identity it has verified itself.
func Set(set func(key, value string), id Identity) {
	set(HeaderUserID, id.UserID)
	set(HeaderUsername, id.Username)
	set(HeaderEmail, id.Email)
	set(HeaderRoles, strings.Join(id.Roles, ","))
}
