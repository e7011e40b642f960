// Package compose checks the Docker Compose deliverable (docker-compose.yml
// and the Dockerfile it builds from) without a Docker engine: the compose
// file is loaded as `docker compose` loads it (compose-go: interpolation,
// the specification's schema and rules, normalization), the Dockerfile
// parsed, and each invariant is a check that returns what it
// found wrong. TestChecksCatchBreakage breaks the files in memory, one way
// per check, and requires each check to notice.
package compose

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// repoRoot is the project directory: the compose file's directory and the
// build context.
const repoRoot = "../.."

// project is the part of a compose file the checks read, with variables
// interpolated, short syntaxes expanded and bind mounts made absolute.
type project struct {
	Services map[string]*service
	Volumes  map[string]bool // the named volumes declared
}

type service struct {
	Name        string
	Image       string
	Build       *buildSpec
	Restart     string
	NetworkMode string
	Environment map[string]string
	Ports       []port
	Volumes     []volume
	HealthCheck *healthCheck
	// DependsOn maps each dependency to its condition ("" in the list
	// syntax, which has none).
	DependsOn  map[string]string
	Command    []string
	Entrypoint []string
}

type buildSpec struct{ Context, Target string }

type port struct{ HostIP, Published, Target string }

type volume struct {
	Bind           bool   // a bind mount; otherwise a named volume
	Source, Target string // Source is absolute for a bind mount
}

type healthCheck struct {
	Test    []string
	Disable bool
}

// loadCompose loads a compose file with compose-go, the loader of
// `docker compose` itself (interpolation with env only, so that the
// result does not depend on the caller's environment; the specification's
// schema; consistency; relative paths resolved against root), and keeps
// what the checks read.
func loadCompose(path, root string, env map[string]string) (*project, error) {
	environ := make([]string, 0, len(env))
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(root),
		cli.WithName("portico"),
		cli.WithEnv(environ),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	loaded, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return toProject(loaded), nil
}

func toProject(loaded *types.Project) *project {
	p := &project{Services: map[string]*service{}, Volumes: map[string]bool{}}
	for name := range loaded.Volumes {
		p.Volumes[name] = true
	}
	for name, svc := range loaded.Services {
		s := &service{
			Name: name, Image: svc.Image, Restart: svc.Restart, NetworkMode: svc.NetworkMode,
			Environment: map[string]string{}, DependsOn: map[string]string{},
			Command: svc.Command, Entrypoint: svc.Entrypoint,
		}
		if svc.Build != nil {
			s.Build = &buildSpec{Context: svc.Build.Context, Target: svc.Build.Target}
		}
		for k, v := range svc.Environment {
			if v != nil {
				s.Environment[k] = *v
			}
		}
		for _, pt := range svc.Ports {
			s.Ports = append(s.Ports, port{HostIP: pt.HostIP, Published: pt.Published, Target: strconv.FormatUint(uint64(pt.Target), 10)})
		}
		for _, v := range svc.Volumes {
			s.Volumes = append(s.Volumes, volume{Bind: v.Type == types.VolumeTypeBind, Source: v.Source, Target: v.Target})
		}
		if h := svc.HealthCheck; h != nil {
			s.HealthCheck = &healthCheck{Test: h.Test, Disable: h.Disable}
		}
		for dep, d := range svc.DependsOn {
			s.DependsOn[dep] = d.Condition
		}
		p.Services[name] = s
	}
	return p
}

// loadProject loads the repository's docker-compose.yml with the defaults
// of its variables (not the caller's environment, so that the result
// does not depend on it).
func loadProject(t *testing.T) *project {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loadCompose(filepath.Join(root, "docker-compose.yml"), root, map[string]string{})
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

// loadDockerfile parses the Dockerfile at the root.
func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(string(b))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return df
}

// report fails t with every problem a check found.
func report(t *testing.T, problems []string) {
	t.Helper()
	if len(problems) > 0 {
		t.Errorf("%d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
}

// TestLoadCompose checks the reading itself: the schema rejects what
// Compose rejects, variables are substituted with the given environment
// only, and the short syntaxes come out expanded.
func TestLoadCompose(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		path := filepath.Join(dir, "compose.yml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p, err := loadCompose(write(`
x-env: &env
  A: ${TAG:-dev}
services:
  app:
    image: app:${TAG-1.0}
    command: ["sh", "-c", "echo $$HOME ${UNSET}x"]
    environment:
      <<: *env
      B: $TAG
    ports: ["127.0.0.1:80:8080", "9000"]
    volumes: ["./data:/data:ro", "named:/var/lib"]
    depends_on: [db]
  db:
    image: db:1
volumes:
  named:
`), dir, map[string]string{"TAG": "2.0"})
	if err != nil {
		t.Fatal(err)
	}
	app := p.Services["app"]
	if app.Image != "app:2.0" || app.Environment["A"] != "2.0" || app.Environment["B"] != "2.0" ||
		app.Command[2] != "echo $HOME x" {
		t.Errorf("interpolated: %+v", app)
	}
	if app.Ports[0] != (port{"127.0.0.1", "80", "8080"}) || app.Ports[1] != (port{Target: "9000"}) {
		t.Errorf("ports %+v", app.Ports)
	}
	if app.Volumes[0] != (volume{true, filepath.Join(dir, "data"), "/data"}) || app.Volumes[1] != (volume{false, "named", "/var/lib"}) {
		t.Errorf("volumes %+v", app.Volumes)
	}
	// The list syntax waits for the start only, as Compose normalizes it.
	if c, ok := app.DependsOn["db"]; !ok || c != "service_started" {
		t.Errorf("depends_on %+v", app.DependsOn)
	}
	for name, text := range map[string]string{
		"unknown key":      "services:\n  app:\n    image: a:1\n    healthchek: {}\n",
		"required unset":   "services:\n  app:\n    image: a:${TAG:?set TAG}\n",
		"bad restart type": "services:\n  app:\n    image: a:1\n    restart: [no]\n",
	} {
		if _, err := loadCompose(write(text), dir, map[string]string{}); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}
