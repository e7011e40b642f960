package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portico-mesh/portico/services/platform/command"
)

type config struct{ level, greeting string }

func load(environ []string) (config, error) {
	cfg := config{level: "info"}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "LOG_LEVEL":
			cfg.level = v
		case "GREETING":
			if v == "" {
				return config{}, errors.New("GREETING must not be empty")
			}
			cfg.greeting = v
		}
	}
	return cfg, nil
}

func spec(run func(context.Context, config, *slog.Logger) error) command.Spec[config] {
	return command.Spec[config]{
		Name: "probe", Load: load, Run: run,
		LogLevel: func(c config) string { return c.level },
	}
}

// logLines decodes the JSON lines written to out.
func logLines(t *testing.T, out *bytes.Buffer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(out.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestInvalidConfigurationExitsWithoutRunning(t *testing.T) {
	var out bytes.Buffer
	ran := false
	code := command.Execute(t.Context(), spec(func(context.Context, config, *slog.Logger) error {
		ran = true
		return nil
	}), []string{"GREETING="}, &out)
	if code != command.ExitConfig || ran {
		t.Fatalf("code %d, ran %v", code, ran)
	}
	lines := logLines(t, &out)
	if len(lines) != 1 || lines[0]["msg"] != "invalid configuration" || !strings.Contains(lines[0]["error"].(string), "GREETING") {
		t.Fatalf("logs: %v", lines)
	}
}

func TestRunGetsTheConfigurationAndItsLevel(t *testing.T) {
	var out bytes.Buffer
	code := command.Execute(t.Context(), spec(func(_ context.Context, cfg config, log *slog.Logger) error {
		log.Debug("hidden at warn")
		log.Warn("shown", "greeting", cfg.greeting)
		return nil
	}), []string{"LOG_LEVEL=warn", "GREETING=hello"}, &out)
	if code != command.ExitOK {
		t.Fatalf("code %d: %s", code, out.String())
	}
	lines := logLines(t, &out)
	if len(lines) != 1 || lines[0]["msg"] != "shown" || lines[0]["greeting"] != "hello" {
		t.Fatalf("logs: %v", lines)
	}
}

func TestFailedRunExitsNonZero(t *testing.T) {
	var out bytes.Buffer
	code := command.Execute(t.Context(), spec(func(context.Context, config, *slog.Logger) error {
		return errors.New("database unreachable")
	}), nil, &out)
	if code != command.ExitFailed || !strings.Contains(out.String(), "database unreachable") {
		t.Fatalf("code %d: %s", code, out.String())
	}
}

// TestSignalEndsTheRun: SIGTERM cancels the run's context, and a run that
// then shuts down cleanly exits 0.
func TestSignalEndsTheRun(t *testing.T) {
	var out bytes.Buffer
	code := command.Execute(t.Context(), spec(func(ctx context.Context, _ config, _ *slog.Logger) error {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("SIGTERM did not end the context")
		}
	}), nil, &out)
	if code != command.ExitOK {
		t.Fatalf("code %d: %s", code, out.String())
	}
}

func TestParseEnvDefaultsOnlyWhatIsUnset(t *testing.T) {
	type settings struct {
		Addr  string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080"`
		Level string `env:"LOG_LEVEL" envDefault:"info"`
	}
	defaults := map[string]string{"HTTP_ADDR": "127.0.0.1:8082"}
	got, err := command.ParseEnv[settings]([]string{"LOG_LEVEL=debug"}, defaults)
	if err != nil || got.Addr != "127.0.0.1:8082" || got.Level != "debug" {
		t.Fatalf("unset HTTP_ADDR: %+v, %v; want the process default and the set level", got, err)
	}
	got, err = command.ParseEnv[settings]([]string{"HTTP_ADDR=0.0.0.0:9000"}, defaults)
	if err != nil || got.Addr != "0.0.0.0:9000" {
		t.Fatalf("set HTTP_ADDR: %+v, %v; want the environment's value", got, err)
	}
	if _, err := command.ParseEnv[struct {
		N int `env:"N"`
	}]([]string{"N=x"}, nil); err == nil {
		t.Fatal("a malformed value parsed")
	}
}
