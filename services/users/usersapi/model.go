package usersapi

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/jsonbody"
	"github.com/portico-mesh/portico/services/platform/problem"
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

func (r *registerRequest) members() map[string]any {
	return map[string]any{"username": &r.Username, "email": &r.Email, "password": &r.Password}
}

func toBusNewUser(r registerRequest) usersbus.NewUser {
	return usersbus.NewUser{Username: r.Username, Email: r.Email, Password: r.Password}
}

// loginRequest is the body of POST /login.
type loginRequest struct {
	Email    string
	Password string
}

func (r *loginRequest) members() map[string]any {
	return map[string]any{"email": &r.Email, "password": &r.Password}
}

// updateRequest is the body of PUT /users/{id}; every member is optional.
type updateRequest struct {
	Username string
	Email    string
	IsActive bool
	Password string
	Roles    []string
}

func (r *updateRequest) members() map[string]any {
	return map[string]any{
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

// Request bodies are decoded strictly (see jsonbody): a typo never goes
// unnoticed, and every offending member is named in one 422.

func decodeRegister(c *fiber.Ctx) (registerRequest, error) {
	members, err := jsonbody.Decode(c)
	if err != nil {
		return registerRequest{}, err
	}
	var req registerRequest
	present, errs := members.Into(req.members())
	errs = append(errs, members.Missing("username", "email", "password")...)
	errs = append(errs, checkMember(present, "username", req.Username, usersbus.CheckUsername)...)
	errs = append(errs, checkMember(present, "email", req.Email, usersbus.CheckEmail)...)
	errs = append(errs, checkMember(present, "password", req.Password, usersbus.CheckPassword)...)
	if err := jsonbody.Validation(errs); err != nil {
		return registerRequest{}, err
	}
	return req, nil
}

func decodeLogin(c *fiber.Ctx) (loginRequest, error) {
	members, err := jsonbody.Decode(c)
	if err != nil {
		return loginRequest{}, err
	}
	var req loginRequest
	_, errs := members.Into(req.members())
	errs = append(errs, members.Missing("email", "password")...)
	if err := jsonbody.Validation(errs); err != nil {
		return loginRequest{}, err
	}
	return req, nil
}

func decodeUpdate(c *fiber.Ctx) (usersbus.UpdateUser, error) {
	members, err := jsonbody.Decode(c)
	if err != nil {
		return usersbus.UpdateUser{}, err
	}
	var req updateRequest
	present, errs := members.Into(req.members())
	errs = append(errs, checkMember(present, "username", req.Username, usersbus.CheckUsername)...)
	errs = append(errs, checkMember(present, "email", req.Email, usersbus.CheckEmail)...)
	errs = append(errs, checkMember(present, "password", req.Password, usersbus.CheckPassword)...)
	if present["roles"] {
		for _, i := range usersbus.UnknownRoles(req.Roles) {
			errs = append(errs, problem.FieldError{
				Field:   "roles",
				Pointer: jsonbody.Pointer("roles", strconv.Itoa(i)),
				Detail:  fmt.Sprintf("%q is not a known role (known: %s)", req.Roles[i], strings.Join(usersbus.KnownRoles, ", ")),
			})
		}
	}
	if err := jsonbody.Validation(errs); err != nil {
		return usersbus.UpdateUser{}, err
	}
	return toBusUpdateUser(req, present), nil
}

// checkMember applies a business rule to a member that was sent.
func checkMember(present map[string]bool, name, value string, check func(string) error) []problem.FieldError {
	if !present[name] {
		return nil
	}
	if err := check(value); err != nil {
		return []problem.FieldError{jsonbody.MemberError(name, err.Error())}
	}
	return nil
}
