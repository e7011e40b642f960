// Package usersapi is the HTTP surface of the Users service: registration,
// login, account management, and the JWKS that verifies the tokens it issues.
package usersapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/identity"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/web"
	"github.com/portico-mesh/portico/services/users/token"
	"github.com/portico-mesh/portico/services/users/usersbus"
)

// Deadlines of the work behind a request. Logins and password changes may
// queue for a hashing slot, so they get longer.
const (
	queryTimeout = 5 * time.Second
	hashTimeout  = 15 * time.Second
)

// Pagination limits of GET /users.
const (
	defaultLimit = 20
	maxLimit     = 100
)

// Cache-Control values. Account data is per-caller and personal: never
// stored by shared or private caches. The JWKS is public and changes only
// with a key rotation, which keeps old keys published longer than this.
const (
	cacheNoStore        = "no-store"
	cachePrivateNoStore = "private, no-store"
	cachePublic         = "public, max-age=300"
)

// Config is what the API needs.
type Config struct {
	Log    *slog.Logger
	Users  *usersbus.Business
	Tokens *token.Issuer
	// TokenTTL is reported as expires_in; it must be the issuer's TTL.
	TokenTTL time.Duration
}

// API serves the Users routes.
type API struct {
	cfg     Config
	openapi []byte // the document as JSON, built once
}

// New checks cfg and loads the OpenAPI document.
func New(ctx context.Context, cfg Config) (*API, error) {
	if cfg.Users == nil || cfg.Tokens == nil || cfg.TokenTTL <= 0 {
		return nil, errors.New("usersapi: Users, Tokens and TokenTTL are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	doc, err := LoadDocument(ctx)
	if err != nil {
		return nil, err
	}
	body, err := doc.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("usersapi: marshal OpenAPI document: %w", err)
	}
	return &API{cfg: cfg, openapi: body}, nil
}

// Routes lists the service's operations, to be mounted on its server.
func (a *API) Routes() []web.Route {
	return []web.Route{
		{Method: http.MethodPost, Path: "/users", Handler: noStore(a.register)},
		{Method: http.MethodGet, Path: "/users", Handler: noStore(a.list)},
		{Method: http.MethodGet, Path: "/users/:id", Handler: noStore(a.get)},
		{Method: http.MethodPut, Path: "/users/:id", Handler: noStore(a.update)},
		{Method: http.MethodDelete, Path: "/users/:id", Handler: noStore(a.delete)},
		{Method: http.MethodPost, Path: "/login", Handler: noStore(a.login)},
		{Method: http.MethodGet, Path: "/.well-known/jwks.json", Handler: a.jwks},
		{Method: http.MethodGet, Path: "/openapi.json", Handler: a.document},
	}
}

// noStore marks a response uncacheable before the handler runs, so errors
// (rendered later by the shared error handler) carry it too. Successful
// reads replace it with cachePrivateNoStore.
func noStore(h fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, cacheNoStore)
		return h(c)
	}
}

func (a *API) register(c *fiber.Ctx) error {
	var req registerRequest
	present, errs, err := decodeBody(c, req.members())
	if err != nil {
		return err
	}
	errs = required(present, errs, "username", "email", "password")
	errs = append(errs, checkMember(present, "username", req.Username, usersbus.CheckUsername)...)
	errs = append(errs, checkMember(present, "email", req.Email, usersbus.CheckEmail)...)
	errs = append(errs, checkMember(present, "password", req.Password, usersbus.CheckPassword)...)
	if len(errs) > 0 {
		return problem.Validation(errs...)
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), hashTimeout)
	defer cancel()
	u, err := a.cfg.Users.Register(ctx, toBusNewUser(req))
	if err != nil {
		return err
	}
	// Relative to the request URL, so it stays right behind any path
	// prefix the ingress adds (/api/users/users -> /api/users/users/7).
	c.Location("users/" + strconv.FormatInt(u.ID, 10))
	return c.Status(fiber.StatusCreated).JSON(toAppUser(u))
}

func (a *API) login(c *fiber.Ctx) error {
	var req loginRequest
	present, errs, err := decodeBody(c, req.members())
	if err != nil {
		return err
	}
	errs = required(present, errs, "email", "password")
	if len(errs) > 0 {
		return problem.Validation(errs...)
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), hashTimeout)
	defer cancel()
	u, err := a.cfg.Users.Authenticate(ctx, req.Email, req.Password)
	if err != nil {
		return err
	}
	tok, _, err := a.cfg.Tokens.Issue(token.Subject{
		ID:       strconv.FormatInt(u.ID, 10),
		Username: u.Username,
		Email:    u.Email,
		Roles:    u.Roles,
	})
	if err != nil {
		return err
	}
	// RFC 6749 §5.1: token responses must not be cached.
	c.Set(fiber.HeaderPragma, "no-cache")
	return c.JSON(tokenResponse{
		AccessToken: tok,
		TokenType:   "Bearer",
		ExpiresIn:   int64(a.cfg.TokenTTL / time.Second),
	})
}

func (a *API) list(c *fiber.Ctx) error {
	actor, err := actorOf(c)
	if err != nil {
		return err
	}
	page, err := parsePage(c)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), queryTimeout)
	defer cancel()
	users, more, err := a.cfg.Users.Query(ctx, actor, page)
	if err != nil {
		return err
	}
	out := userPage{Items: make([]userResponse, 0, len(users))}
	for _, u := range users {
		out.Items = append(out.Items, toAppUser(u))
	}
	if more {
		out.NextCursor = encodeCursor(users[len(users)-1].ID)
		q := url.Values{"limit": {strconv.Itoa(page.Limit)}, "cursor": {out.NextCursor}}
		// A query-only reference resolves against the request URL, so the
		// link survives the ingress's path prefix.
		c.Set(fiber.HeaderLink, fmt.Sprintf(`<?%s>; rel="next"`, q.Encode()))
	}
	c.Set(fiber.HeaderCacheControl, cachePrivateNoStore)
	return c.JSON(out)
}

func (a *API) get(c *fiber.Ctx) error {
	actor, err := actorOf(c)
	if err != nil {
		return err
	}
	id, err := userID(c)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), queryTimeout)
	defer cancel()
	u, err := a.cfg.Users.QueryByID(ctx, actor, id)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, cachePrivateNoStore)
	return c.JSON(toAppUser(u))
}

func (a *API) update(c *fiber.Ctx) error {
	actor, err := actorOf(c)
	if err != nil {
		return err
	}
	id, err := userID(c)
	if err != nil {
		return err
	}
	var req updateRequest
	present, errs, err := decodeBody(c, req.members())
	if err != nil {
		return err
	}
	errs = append(errs, checkMember(present, "username", req.Username, usersbus.CheckUsername)...)
	errs = append(errs, checkMember(present, "email", req.Email, usersbus.CheckEmail)...)
	errs = append(errs, checkMember(present, "password", req.Password, usersbus.CheckPassword)...)
	if present["roles"] {
		for _, i := range usersbus.UnknownRoles(req.Roles) {
			errs = append(errs, problem.FieldError{
				Field:   "roles",
				Pointer: pointer("roles", strconv.Itoa(i)),
				Detail:  fmt.Sprintf("%q is not a known role (known: %s)", req.Roles[i], strings.Join(usersbus.KnownRoles, ", ")),
			})
		}
	}
	if len(errs) > 0 {
		return problem.Validation(errs...)
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), hashTimeout)
	defer cancel()
	u, err := a.cfg.Users.Update(ctx, actor, id, toBusUpdateUser(req, present))
	if err != nil {
		return err
	}
	return c.JSON(toAppUser(u))
}

func (a *API) delete(c *fiber.Ctx) error {
	actor, err := actorOf(c)
	if err != nil {
		return err
	}
	id, err := userID(c)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), queryTimeout)
	defer cancel()
	if err := a.cfg.Users.Delete(ctx, actor, id); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (a *API) jwks(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, cachePublic)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(a.cfg.Tokens.Keyring().JWKS())
}

func (a *API) document(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, cachePublic)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(a.openapi)
}

// actorOf is the authenticated caller, from the identity headers the
// ingress sets after verifying the token.
func actorOf(c *fiber.Ctx) (usersbus.Actor, error) {
	id := identity.FromFiber(c)
	if id.Anonymous() {
		return usersbus.Actor{}, usersbus.ErrUnauthenticated
	}
	uid, err := strconv.ParseInt(id.UserID, 10, 64)
	if err != nil || uid <= 0 {
		return usersbus.Actor{}, problem.Unauthenticated("the caller's user id is not a user id")
	}
	return usersbus.Actor{UserID: uid, Roles: slices.Clone(id.Roles)}, nil
}

// userID is the :id path parameter. Anything but a positive integer names
// no user.
func userID(c *fiber.Ctx) (int64, error) {
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, problem.NotFound("user not found")
	}
	return id, nil
}

func parsePage(c *fiber.Ctx) (usersbus.Page, error) {
	page := usersbus.Page{Limit: defaultLimit}
	var errs []problem.FieldError
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxLimit {
			errs = append(errs, problem.Field("limit", fmt.Sprintf("must be an integer from 1 to %d", maxLimit)))
		}
		page.Limit = n
	}
	if raw := c.Query("cursor"); raw != "" {
		id, ok := decodeCursor(raw)
		if !ok {
			errs = append(errs, problem.Field("cursor", "is not a cursor this service returned"))
		}
		page.AfterID = id
	}
	if len(errs) > 0 {
		return usersbus.Page{}, problem.Validation(errs...)
	}
	return page, nil
}

func checkMember(present map[string]bool, name, value string, check func(string) error) []problem.FieldError {
	if !present[name] {
		return nil
	}
	if err := check(value); err != nil {
		return []problem.FieldError{problem.Field(name, err.Error())}
	}
	return nil
}

// Classify turns the business layer's errors into problems; the shared
// error handler renders them (web.Config.Classify).
func Classify(err error) *problem.Problem {
	var forbidden *usersbus.FieldForbiddenError
	switch {
	case errors.As(err, &forbidden):
		p := problem.Forbidden(forbidden.Reason)
		p.Errors = []problem.FieldError{problem.Field(forbidden.Field, forbidden.Reason)}
		return p
	case errors.Is(err, usersbus.ErrNotFound):
		return problem.NotFound("user not found")
	case errors.Is(err, usersbus.ErrUniqueEmail):
		return problem.Conflict("a user with this email already exists", problem.Field("email", "is already registered"))
	case errors.Is(err, usersbus.ErrUniqueUsername):
		return problem.Conflict("a user with this username already exists", problem.Field("username", "is already taken"))
	case errors.Is(err, usersbus.ErrLastAdmin):
		return problem.Conflict("the last active admin cannot lose the admin role, be deactivated or be deleted")
	case errors.Is(err, usersbus.ErrStale):
		return problem.Conflict("the user was changed by another request at the same time; retry")
	case errors.Is(err, usersbus.ErrInvalidCredentials):
		return problem.Unauthenticated("invalid email or password")
	case errors.Is(err, usersbus.ErrUnauthenticated):
		return problem.Unauthenticated("this operation requires an authenticated caller")
	case errors.Is(err, usersbus.ErrForbidden):
		return problem.Forbidden("only the user themselves or an admin may do this")
	case errors.Is(err, usersbus.ErrInvalid):
		p := problem.Validation()
		p.Detail = err.Error()
		return p
	case errors.Is(err, context.DeadlineExceeded):
		return problem.New(problem.TypeUnavailable, fiber.StatusServiceUnavailable, "the service is busy; retry later")
	}
	return nil
}
