// Package users wires the Users service: Build turns a database pool, the
// signing keys and the process's HTTP configuration into the service's
// server, after making sure the configured bootstrap admin exists. The
// command (services/cmd/users), the service's own tests and the
// whole-stack tests all call Build, so they run the same service.
//
// The service itself is three layers, each in its own package: usersapi
// (HTTP), usersbus (rules, owning its Storer) and usersdb (PostgreSQL),
// plus token (JWT issuing and the JWKS).
package users

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/platform/web"
	"github.com/portico-mesh/portico/services/users/token"
	"github.com/portico-mesh/portico/services/users/usersapi"
	"github.com/portico-mesh/portico/services/users/usersbus"
	"github.com/portico-mesh/portico/services/users/usersdb"
)

// Name names the service in the mesh, logs, metrics and spans.
const Name = "users"

// Config is the service's own configuration; its command reads it from
// the environment next to service.BaseConfig.
type Config struct {
	JWTIssuer   string        `env:"JWT_ISSUER" envDefault:"portico-users"`
	JWTAudience string        `env:"JWT_AUDIENCE" envDefault:"portico"`
	JWTTTL      time.Duration `env:"JWT_TTL" envDefault:"15m"`
	// JWTKeysDir holds the Ed25519 keys (see the token package). When it has
	// no private key, a development key is generated there.
	JWTKeysDir string `env:"JWT_KEYS_DIR" envDefault:".run/keys/users"`

	BootstrapAdminEmail    string `env:"BOOTSTRAP_ADMIN_EMAIL"`
	BootstrapAdminUsername string `env:"BOOTSTRAP_ADMIN_USERNAME" envDefault:"admin"`
	// unset: removed from the process environment once read, so that child
	// processes do not inherit it.
	BootstrapAdminPassword Secret `env:"BOOTSTRAP_ADMIN_PASSWORD,unset"`
}

// Validate reports everything that is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.JWTTTL <= 0 {
		errs = append(errs, errors.New("JWT_TTL must be positive"))
	}
	if c.JWTIssuer == "" || c.JWTAudience == "" || c.JWTKeysDir == "" {
		errs = append(errs, errors.New("JWT_ISSUER, JWT_AUDIENCE and JWT_KEYS_DIR must not be empty"))
	}
	if (c.BootstrapAdminEmail == "") != (c.BootstrapAdminPassword == "") {
		errs = append(errs, errors.New("BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD must be set together"))
	}
	return errors.Join(errs...)
}

// Secret is a configuration value that must never be printed or logged.
type Secret string

// UnmarshalText reads the value from the environment.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// String keeps %v and %s from printing the value.
func (Secret) String() string { return "[redacted]" }

// GoString keeps %#v from printing the value.
func (Secret) GoString() string { return "[redacted]" }

// MarshalJSON keeps JSON encoders from printing the value.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// LogValue keeps slog from printing the value.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Reveal returns the value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Deps is what the service is built from (service.Deps).
type Deps = service.Deps[Config]

// Build loads (or, in development, generates) the signing keys, ensures
// the bootstrap admin when one is configured, and returns the service's
// HTTP server with its routes mounted. It opens nothing that outlives it.
func Build(ctx context.Context, deps Deps) (*web.Server, error) {
	if deps.Pool == nil {
		return nil, errors.New("users: Deps.Pool is required")
	}
	cfg := deps.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	log := deps.Web.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	openAPI, err := usersapi.OpenAPIJSON()
	if err != nil {
		return nil, err
	}
	keys, generated, err := token.LoadOrGenerate(cfg.JWTKeysDir)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if generated {
		log.WarnContext(ctx, "generated a development signing key; provide keys in JWT_KEYS_DIR in production",
			"dir", cfg.JWTKeysDir, "kid", keys.SigningKID())
	}
	issuer, err := token.NewIssuer(keys, token.Config{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, TTL: cfg.JWTTTL})
	if err != nil {
		return nil, err
	}
	bus, err := usersbus.NewBusiness(usersdb.NewStore(deps.Pool, outbox.NewWriter(deps.Web.Tracing)), usersbus.Config{Log: log})
	if err != nil {
		return nil, err
	}
	if cfg.BootstrapAdminEmail != "" {
		if err := bootstrapAdmin(ctx, cfg, bus, log); err != nil {
			return nil, err
		}
	}
	webCfg := deps.Web
	webCfg.Classify = usersapi.Classify
	srv := web.New(webCfg)
	srv.Mount(usersapi.Routes(usersapi.Config{
		Log:      log,
		Business: bus,
		Tokens:   issuer,
		TokenTTL: cfg.JWTTTL,
		OpenAPI:  openAPI,
	})...)
	return srv, nil
}

// bootstrapAdmin makes sure the configured admin exists; see
// usersbus.EnsureAdmin. The password is neither logged nor put in errors.
func bootstrapAdmin(ctx context.Context, cfg Config, users *usersbus.Business, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	u, outcome, err := users.EnsureAdmin(ctx, usersbus.NewUser{
		Username: cfg.BootstrapAdminUsername,
		Email:    cfg.BootstrapAdminEmail,
		Password: cfg.BootstrapAdminPassword.Reveal(),
	})
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "bootstrap admin ensured", "outcome", outcome.String(),
		"user_id", u.ID, "username", u.Username, "email", u.Email, "active", u.IsActive)
	if !u.IsActive {
		log.WarnContext(ctx, "the bootstrap admin's account is deactivated; it cannot log in", "user_id", u.ID)
	}
	return nil
}
