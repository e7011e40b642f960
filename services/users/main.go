// Command users runs the Users service: registration, login (EdDSA JWTs),
// account management and the JWKS the ingress verifies tokens with.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/command"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/platform/web"
	"github.com/portico-mesh/portico/services/users/token"
	"github.com/portico-mesh/portico/services/users/usersapi"
	"github.com/portico-mesh/portico/services/users/usersbus"
	"github.com/portico-mesh/portico/services/users/usersdb"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const serviceName = "users"

// defaultHTTPAddr is where the Users service listens unless HTTP_ADDR says
// otherwise; each service has its own port for local runs.
const defaultHTTPAddr = "127.0.0.1:8081"

// Config is the service's environment.
type Config struct {
	service.BaseConfig

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
	BootstrapAdminPassword secret `env:"BOOTSTRAP_ADMIN_PASSWORD,unset"`
}

// secret is a configuration value that must never be printed or logged.
type secret string

func (s *secret) UnmarshalText(b []byte) error { *s = secret(b); return nil }
func (secret) String() string                  { return "[redacted]" }
func (secret) GoString() string                { return "[redacted]" }
func (secret) MarshalJSON() ([]byte, error)    { return []byte(`"[redacted]"`), nil }
func (secret) LogValue() slog.Value            { return slog.StringValue("[redacted]") }
func (s secret) reveal() string                { return string(s) }

func (c Config) validate() error {
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

// loadConfig parses the configuration from environ (os.Environ's form).
func loadConfig(environ []string) (Config, error) {
	vars := env.ToMap(environ)
	if _, ok := vars["HTTP_ADDR"]; !ok {
		vars["HTTP_ADDR"] = defaultHTTPAddr
	}
	var cfg Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := cfg.validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func main() {
	command.Main(command.Spec[Config]{
		Name: serviceName, Load: loadConfig, Run: run,
		LogLevel: func(c Config) string { return c.LogLevel },
	})
}

func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	rt, srv, err := start(ctx, cfg, log)
	if err != nil {
		return err
	}
	return rt.Run(ctx, srv)
}

// start builds everything the service runs: keys, database, business
// layer, the bootstrap admin and the HTTP server. On error nothing is left
// open.
func start(ctx context.Context, cfg Config, log *slog.Logger) (*service.Runtime, *web.Server, error) {
	keys, generated, err := token.LoadOrGenerate(cfg.JWTKeysDir)
	if err != nil {
		return nil, nil, fmt.Errorf("signing keys: %w", err)
	}
	if generated {
		log.WarnContext(ctx, "generated a development signing key; provide keys in JWT_KEYS_DIR in production",
			"dir", cfg.JWTKeysDir, "kid", keys.SigningKID())
	}
	issuer, err := token.NewIssuer(keys, token.Config{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, TTL: cfg.JWTTTL})
	if err != nil {
		return nil, nil, err
	}

	rt, err := service.Open(ctx, cfg.BaseConfig, serviceName, version, migrations.Users(), log)
	if err != nil {
		return nil, nil, err
	}
	srv, err := build(ctx, cfg, rt, issuer)
	if err != nil {
		return nil, nil, errors.Join(err, rt.Close(context.WithoutCancel(ctx)))
	}
	return rt, srv, nil
}

func build(ctx context.Context, cfg Config, rt *service.Runtime, issuer *token.Issuer) (*web.Server, error) {
	users, err := usersbus.New(usersdb.New(rt.Pool, rt.Tracing.Propagator), usersbus.Config{Log: rt.Log})
	if err != nil {
		return nil, err
	}
	if cfg.BootstrapAdminEmail != "" {
		if err := bootstrapAdmin(ctx, cfg, users, rt.Log); err != nil {
			return nil, err
		}
	}
	api, err := usersapi.New(ctx, usersapi.Config{Log: rt.Log, Users: users, Tokens: issuer, TokenTTL: cfg.JWTTTL})
	if err != nil {
		return nil, err
	}
	srv := web.New(rt.WebConfig(usersapi.Classify))
	srv.Mount(api.Routes()...)
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
		Password: cfg.BootstrapAdminPassword.reveal(),
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
