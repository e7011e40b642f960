package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/users"
)

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	got, err := cmd().Spec().Load([]string{"DATABASE_URL=postgres://db/users"})
	if err != nil {
		t.Fatal(err)
	}
	want := service.Config[users.Config]{
		BaseConfig: service.BaseConfig{
			HTTPAddr:        "127.0.0.1:8081",
			DatabaseURL:     "postgres://db/users",
			AMQPURL:         "amqp://guest:guest@127.0.0.1:5672/",
			AMQPExchange:    "portico.events",
			LogLevel:        "info",
			ShutdownTimeout: 20 * time.Second,
			Consul: service.ConsulConfig{
				CheckInterval:   2 * time.Second,
				DeregisterAfter: time.Minute,
				DrainDelay:      time.Second,
			},
		},
		Own: users.Config{
			JWTIssuer:              "portico-users",
			JWTAudience:            "portico",
			JWTTTL:                 15 * time.Minute,
			JWTKeysDir:             ".run/keys/users",
			BootstrapAdminUsername: "admin",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestLoadConfigOverrides(t *testing.T) {
	t.Parallel()
	got, err := cmd().Spec().Load([]string{
		"DATABASE_URL=postgres://db/users",
		"HTTP_ADDR=0.0.0.0:9000",
		"JWT_ISSUER=iss", "JWT_AUDIENCE=aud", "JWT_TTL=1h", "JWT_KEYS_DIR=/keys",
		"BOOTSTRAP_ADMIN_EMAIL=root@example.com", "BOOTSTRAP_ADMIN_PASSWORD=p4ssw0rd!", "BOOTSTRAP_ADMIN_USERNAME=root",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.HTTPAddr != "0.0.0.0:9000" || got.Own.JWTIssuer != "iss" || got.Own.JWTAudience != "aud" || got.Own.JWTTTL != time.Hour ||
		got.Own.JWTKeysDir != "/keys" || got.Own.BootstrapAdminEmail != "root@example.com" ||
		got.Own.BootstrapAdminPassword.Reveal() != "p4ssw0rd!" || got.Own.BootstrapAdminUsername != "root" {
		t.Errorf("config %+v", got)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	for name, environ := range map[string][]string{
		"no database":            {},
		"email without password": {"DATABASE_URL=x", "BOOTSTRAP_ADMIN_EMAIL=root@example.com"},
		"password without email": {"DATABASE_URL=x", "BOOTSTRAP_ADMIN_PASSWORD=secret-value"},
		"unparsable ttl":         {"DATABASE_URL=x", "JWT_TTL=soon"},
		"zero ttl":               {"DATABASE_URL=x", "JWT_TTL=0s"},
	} {
		if _, err := cmd().Spec().Load(environ); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "secret-value") {
			t.Errorf("%s: error reveals the password: %v", name, err)
		}
	}
}

// Not parallel: it sets a process environment variable.
func TestBootstrapPasswordStaysSecret(t *testing.T) {
	t.Setenv("BOOTSTRAP_ADMIN_PASSWORD", "hunter2-hunter2")
	cfg, err := cmd().Spec().Load(append(os.Environ(), "DATABASE_URL=x", "BOOTSTRAP_ADMIN_EMAIL=root@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := os.LookupEnv("BOOTSTRAP_ADMIN_PASSWORD"); ok {
		t.Error("the password is still in the environment")
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", cfg, "password", cfg.Own.BootstrapAdminPassword)
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"%s": fmt.Sprintf("%s", cfg.Own.BootstrapAdminPassword), //nolint:staticcheck // the %s verb itself is under test "slog": logged.String(),
	} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s reveals the password: %s", name, out)
		}
	}
}
