package usersapi

import (
	"encoding/base64"
	"slices"
	"strconv"
	"time"

	"github.com/portico-mesh/portico/services/users/usersbus"
)

// userResponse is a user as clients see it: never the password or its hash.
type userResponse struct {
	ID        int64     `json:"id"`
	Username  string    `json:"username"`
	Email     string    `json:"email"`
	IsActive  bool      `json:"is_active"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toAppUser(u usersbus.User) userResponse {
	roles := slices.Clone(u.Roles)
	if roles == nil {
		roles = []string{} // always an array, never null
	}
	return userResponse{
		ID:        u.ID,
		Username:  u.Username,
		Email:     u.Email,
		IsActive:  u.IsActive,
		Roles:     roles,
		CreatedAt: u.CreatedAt.UTC(),
		UpdatedAt: u.UpdatedAt.UTC(),
	}
}

// userPage is one page of GET /users.
type userPage struct {
	Items      []userResponse `json:"items"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// tokenResponse is the body of a successful login, shaped like an OAuth 2.0
// token response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"` // seconds
}

// registerRequest is the body of POST /users.
type registerRequest struct {
	Username string
	Email    string
	Password string
}

func (r *registerRequest) members() members {
	return members{"username": &r.Username, "email": &r.Email, "password": &r.Password}
}

func toBusNewUser(r registerRequest) usersbus.NewUser {
	return usersbus.NewUser{Username: r.Username, Email: r.Email, Password: r.Password}
}

// loginRequest is the body of POST /login.
type loginRequest struct {
	Email    string
	Password string
}

func (r *loginRequest) members() members {
	return members{"email": &r.Email, "password": &r.Password}
}

// updateRequest is the body of PUT /users/{id}; every member is optional.
type updateRequest struct {
	Username string
	Email    string
	IsActive bool
	Password string
	Roles    []string
}

func (r *updateRequest) members() members {
	return members{
		"username": &r.Username, "email": &r.Email, "is_active": &r.IsActive,
		"password": &r.Password, "roles": &r.Roles,
	}
}

func toBusUpdateUser(r updateRequest, present map[string]bool) usersbus.UpdateUser {
	var uu usersbus.UpdateUser
	if present["username"] {
		uu.Username = &r.Username
	}
	if present["email"] {
		uu.Email = &r.Email
	}
	if present["is_active"] {
		uu.IsActive = &r.IsActive
	}
	if present["password"] {
		uu.Password = &r.Password
	}
	if present["roles"] {
		roles := r.Roles
		if roles == nil {
			roles = []string{}
		}
		uu.Roles = &roles
	}
	return uu
}

// Cursors are opaque to clients: base64url of the last id of a page.

func encodeCursor(lastID int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(lastID, 10)))
}

func decodeCursor(cursor string) (int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != string(raw) {
		return 0, false
	}
	return id, true
}
