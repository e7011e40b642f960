package main

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/users"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Postgres, localenvtest.RabbitMQ))
}

// run, as main calls it: serves until its context ends, then returns
// cleanly after flushing. (The service's behaviour is tested in usersapi,
// through the same users.Build.)
func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	cfg := service.Config[users.Config]{
		BaseConfig: service.BaseConfig{
			HTTPAddr:        "127.0.0.1:0",
			DatabaseURL:     pgtest.NewDatabase(t, migrations.Users()),
			AMQPURL:         localenvtest.AMQPURL(t),
			AMQPExchange:    "test.users.run",
			LogLevel:        "debug",
			ShutdownTimeout: 5 * time.Second,
		},
		Own: users.Config{
			JWTIssuer: "portico-users-test", JWTAudience: "portico-test", JWTTTL: time.Minute,
			JWTKeysDir: t.TempDir(), BootstrapAdminUsername: "admin",
		},
	}
	logs := &localenvtest.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd().Spec().Run(ctx, cfg, telemetry.NewLogger(logs, slog.LevelInfo, users.Name)) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(logs.Records("serving")) == 0 {
		select {
		case err := <-done:
			t.Fatalf("run returned before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("run did not start serving")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
