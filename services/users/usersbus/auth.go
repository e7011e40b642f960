package usersbus

import (
	"errors"
	"fmt"
	"slices"
)

// Authorization errors.
var (
	ErrUnauthenticated = errors.New("no authenticated caller")
	ErrForbidden       = errors.New("only the user themselves or an admin may do this")
)

// FieldForbiddenError rejects one member of a request that the caller may
// not set. Such members are refused rather than ignored, so a client never
// believes a change happened that did not.
type FieldForbiddenError struct {
	Field  string
	Reason string
}

func (e *FieldForbiddenError) Error() string {
	return fmt.Sprintf("%s: %s", e.Field, e.Reason)
}

// Actor is the caller of a use case, as established by the ingress's
// verified token. The zero Actor is anonymous.
type Actor struct {
	UserID int64
	Roles  []string
}

// IsAdmin reports whether the actor holds the admin role.
func (a Actor) IsAdmin() bool { return slices.Contains(a.Roles, RoleAdmin) }

func (a Actor) authenticated() error {
	if a.UserID <= 0 {
		return ErrUnauthenticated
	}
	return nil
}

// mayChange: users change themselves, admins anyone. Checked before the
// target is read, so a non-admin learns nothing about other accounts, not
// even whether they exist.
func (a Actor) mayChange(id int64) error {
	if err := a.authenticated(); err != nil {
		return err
	}
	if a.UserID != id && !a.IsAdmin() {
		return ErrForbidden
	}
	return nil
}

// mayRead: users read themselves, admins anyone; checked before the
// target is read, as mayChange is.
func (a Actor) mayRead(id int64) error { return a.mayChange(id) }

// mayUpdate checks the members only an admin may send.
func (a Actor) mayUpdate(uu UpdateUser) error {
	if uu.Roles != nil && !a.IsAdmin() {
		return &FieldForbiddenError{Field: "roles", Reason: "only an admin may set roles"}
	}
	return nil
}

// mayApply checks rules that depend on the target's current state.
func (a Actor) mayApply(current User, uu UpdateUser) error {
	// Deactivation is how an admin shuts an account out; the account's own
	// still-valid token must not undo it.
	if uu.IsActive != nil && *uu.IsActive && !current.IsActive && !a.IsAdmin() {
		return &FieldForbiddenError{Field: "is_active", Reason: "only an admin may reactivate an account"}
	}
	return nil
}
