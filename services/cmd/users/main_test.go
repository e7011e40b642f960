package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
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

// logBuffer collects the service's log lines from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// logged reports whether a record with message msg was written.
func (b *logBuffer) logged(msg string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for line := range strings.SplitSeq(b.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			return true
		}
	}
	return false
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
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd().Spec().Run(ctx, cfg, telemetry.NewLogger(logs, slog.LevelInfo, users.Name)) }()
	deadline := time.Now().Add(30 * time.Second)
	for !logs.logged("serving") {
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
