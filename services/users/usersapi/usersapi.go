// Package usersapi is the HTTP surface of the Users service: registration,
// login, account management, and the JWKS that verifies the tokens it issues.
package usersapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/identity"
	"github.com/portico-mesh/portico/services/platform/jsonbody"
	"github.com/portico-mesh/portico/services/platform/page"
	"github.com/portico-mesh/portico/services/platform/pgstore"
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

// Cache-Control values. Account data is per-caller and personal: never
// stored by shared or private caches. The JWKS is public and changes only
// with a key rotation, which keeps old keys published longer than this.
const (
	cacheNoStore        = "no-store"
	cachePrivateNoStore = "private, no-store"
	cachePublic         = "public, max-age=300"
)

// Config is what the routes need.
type Config struct {
	Log      *slog.Logger
	Business *usersbus.Business
	Tokens   *token.Issuer
	// TokenTTL is reported as expires_in; it must be the issuer's TTL.
	TokenTTL time.Duration
	// OpenAPI is the JSON document served at /openapi.json; see OpenAPIJSON.
	OpenAPI []byte
}

// Routes returns the users routes.
func Routes(cfg Config) []web.Route {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := handlers{cfg: cfg}
	return []web.Route{
		{Method: http.MethodPost, Path: "/users", Handler: noStore(h.register)},
		{Method: http.MethodGet, Path: "/users", Handler: noStore(h.list)},
		{Method: http.MethodGet, Path: "/users/:id", Handler: noStore(h.get)},
		{Method: http.MethodPut, Path: "/users/:id", Handler: noStore(h.update)},
		{Method: http.MethodDelete, Path: "/users/:id", Handler: noStore(h.delete)},
		{Method: http.MethodPost, Path: "/login", Handler: noStore(h.login)},
		{Method: http.MethodGet, Path: "/.well-known/jwks.json", Handler: h.jwks},
		{Method: http.MethodGet, Path: "/openapi.json", Handler: h.document},
	}
}

type handlers struct {
	cfg Config
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

func (h handlers) register(c *fiber.Ctx) error {
	req, err := decodeRegister(c)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), hashTimeout)
	defer cancel()
	u, err := h.cfg.Business.Register(ctx, toBusNewUser(req))
	if err != nil {
		return err
	}
	web.SetLocation(c, strconv.FormatInt(u.ID, 10))
	return c.Status(fiber.StatusCreated).JSON(toAppUser(u))
}

func (h handlers) login(c *fiber.Ctx) error {
	req, err := decodeLogin(c)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), hashTimeout)
	defer cancel()
	u, err := h.cfg.Business.Authenticate(ctx, req.Email, req.Password)
	if err != nil {
		return err
	}
	tok, _, err := h.cfg.Tokens.Issue(token.Subject{
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
		ExpiresIn:   int64(h.cfg.TokenTTL / time.Second),
	})
}

func (h handlers) list(c *fiber.Ctx) error {
	actor, err := actorOf(c)
	if err != nil {
		return err
	}
	p, errs := page.Parse(c)
	if err := jsonbody.Validation(errs); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), queryTimeout)
	defer cancel()
	users, more, err := h.cfg.Business.Query(ctx, actor, usersbus.Page{AfterID: p.AfterID, Limit: p.Limit})
	if err != nil {
		return err
	}
	out := userPage{Items: make([]userResponse, 0, len(users))}
	for _, u := range users {
		out.Items = append(out.Items, toAppUser(u))
	}
	if more {
		cursor, next := page.Next(p, users[len(users)-1].ID)
		out.NextCursor = cursor
		page.SetNextLink(c, next)
	}
	c.Set(fiber.HeaderCacheControl, cachePrivateNoStore)
	return c.JSON(out)
}

func (h handlers) get(c *fiber.Ctx) error {
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
	u, err := h.cfg.Business.QueryByID(ctx, actor, id)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, cachePrivateNoStore)
	return c.JSON(toAppUser(u))
}

func (h handlers) update(c *fiber.Ctx) error {
	actor, err := actorOf(c)
	if err != nil {
		return err
	}
	id, err := userID(c)
	if err != nil {
		return err
	}
	uu, err := decodeUpdate(c)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), hashTimeout)
	defer cancel()
	u, err := h.cfg.Business.Update(ctx, actor, id, uu)
	if err != nil {
		return err
	}
	return c.JSON(toAppUser(u))
}

func (h handlers) delete(c *fiber.Ctx) error {
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
	if err := h.cfg.Business.Delete(ctx, actor, id); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (h handlers) jwks(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, cachePublic)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(h.cfg.Tokens.Keyring().JWKS())
}

func (h handlers) document(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, cachePublic)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(h.cfg.OpenAPI)
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
	case errors.Is(err, usersbus.ErrConflict):
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
	case pgstore.Unavailable(err):
		return problem.New(problem.TypeUnavailable, fiber.StatusServiceUnavailable, "the user store is unavailable; retry later")
	}
	return nil
}
