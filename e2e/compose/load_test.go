// Package compose checks the Docker Compose deliverable (docker-compose.yml
// and the Dockerfile it builds from) without a Docker engine: the compose
// file is interpolated and validated against the Compose specification's
// schema and rules (compose-go's schema and validation packages), the
// Dockerfile parsed, and each invariant is a check that returns what it
// found wrong. TestChecksCatchBreakage breaks the files in memory, one way
// per check, and requires each check to notice.
//
// compose-go's loader (packages cli, loader, types) would do the reading,
// but it needs modules go.mod does not list yet (logrus among them), and
// go.mod is not this package's to change: the reading below is the part
// of the loader these checks need, on compose-go's own schema.
package compose

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/validation"
	"go.yaml.in/yaml/v4"
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

// loadCompose reads a compose file as `docker compose` does up to the
// model: YAML (anchors, merge keys), interpolation with env (only the
// defaults, for an empty env), the specification's schema and rules.
func loadCompose(path, root string, env map[string]string) (*project, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	interpolated, err := interpolate(raw, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dict := interpolated.(map[string]any)
	if err := schema.Validate(dict); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := validation.Validate(dict); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return toProject(dict, root)
}

// variable is one substitution: $$, ${NAME}, ${NAME:-default},
// ${NAME-default}, ${NAME:?message}, ${NAME?message} or $NAME.
var variable = regexp.MustCompile(`\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|[A-Za-z_][A-Za-z0-9_]*)`)

// interpolate substitutes variables in every string value (not in keys),
// as Compose does.
func interpolate(v any, env map[string]string) (any, error) {
	switch v := v.(type) {
	case string:
		var errs []error
		out := variable.ReplaceAllStringFunc(v, func(m string) string {
			sub := variable.FindStringSubmatch(m)
			switch {
			case sub[1] == "$":
				return "$"
			case sub[2] == "": // $NAME
				return env[sub[1]]
			}
			value, set := env[sub[2]]
			switch op := sub[3]; {
			case op == ":-" && value == "", op == "-" && !set:
				return sub[4]
			case op == ":?" && value == "", op == "?" && !set:
				errs = append(errs, fmt.Errorf("%s: %s", sub[2], sub[4]))
			}
			return value
		})
		return out, errors.Join(errs...)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			var err error
			if out[k], err = interpolate(e, env); err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			var err error
			if out[i], err = interpolate(e, env); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return v, nil
	}
}

func toProject(dict map[string]any, root string) (*project, error) {
	p := &project{Services: map[string]*service{}, Volumes: map[string]bool{}}
	for name := range asMap(dict["volumes"]) {
		p.Volumes[name] = true
	}
	for name, raw := range asMap(dict["services"]) {
		m := asMap(raw)
		s := &service{
			Name: name, Image: asString(m["image"]), Restart: asString(m["restart"]),
			NetworkMode: asString(m["network_mode"]),
			Environment: map[string]string{}, DependsOn: map[string]string{},
			Command: asCommand(m["command"]), Entrypoint: asCommand(m["entrypoint"]),
		}
		switch b := m["build"].(type) {
		case string:
			s.Build = &buildSpec{Context: absolute(root, b)}
		case map[string]any:
			s.Build = &buildSpec{Context: absolute(root, asString(b["context"])), Target: asString(b["target"])}
		}
		switch env := m["environment"].(type) {
		case map[string]any:
			for k, v := range env {
				s.Environment[k] = asString(v)
			}
		case []any:
			for _, kv := range env {
				k, v, _ := strings.Cut(asString(kv), "=")
				s.Environment[k] = v
			}
		}
		for _, raw := range asList(m["ports"]) {
			pt, err := parsePort(raw)
			if err != nil {
				return nil, fmt.Errorf("service %s: %w", name, err)
			}
			s.Ports = append(s.Ports, pt)
		}
		for _, raw := range asList(m["volumes"]) {
			s.Volumes = append(s.Volumes, parseVolume(raw, root))
		}
		if h, ok := m["healthcheck"].(map[string]any); ok {
			s.HealthCheck = &healthCheck{Disable: h["disable"] == true}
			if test, ok := h["test"].(string); ok {
				s.HealthCheck.Test = []string{"CMD-SHELL", test}
			} else {
				s.HealthCheck.Test = asCommand(h["test"])
			}
		}
		switch deps := m["depends_on"].(type) {
		case []any:
			for _, d := range deps {
				s.DependsOn[asString(d)] = ""
			}
		case map[string]any:
			for d, c := range deps {
				s.DependsOn[d] = asString(asMap(c)["condition"])
			}
		}
		p.Services[name] = s
	}
	return p, nil
}

func absolute(root, path string) string {
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	return filepath.Join(root, path)
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func asString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// asCommand reads a command or entrypoint: a list, or a string split on
// blanks (Compose splits like a shell; the file uses lists).
func asCommand(v any) []string {
	if s, ok := v.(string); ok {
		return strings.Fields(s)
	}
	var out []string
	for _, e := range asList(v) {
		out = append(out, asString(e))
	}
	return out
}

// parsePort reads [[host_ip:]published:]target or the long syntax.
func parsePort(v any) (port, error) {
	if m, ok := v.(map[string]any); ok {
		return port{HostIP: asString(m["host_ip"]), Published: asString(m["published"]), Target: asString(m["target"])}, nil
	}
	s := asString(v)
	if strings.Contains(s, "[") {
		return port{}, fmt.Errorf("port %q: IPv6 host addresses are not understood by this check", s)
	}
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 1:
		return port{Target: parts[0]}, nil
	case 2:
		return port{Published: parts[0], Target: parts[1]}, nil
	case 3:
		return port{HostIP: parts[0], Published: parts[1], Target: parts[2]}, nil
	}
	return port{}, fmt.Errorf("port %q: want [[host_ip:]published:]target", s)
}

// parseVolume reads source:target[:mode] or the long syntax; a source that
// is a path makes a bind mount.
func parseVolume(v any, root string) volume {
	if m, ok := v.(map[string]any); ok {
		vol := volume{Bind: m["type"] == "bind", Source: asString(m["source"]), Target: asString(m["target"])}
		if vol.Bind {
			vol.Source = absolute(root, vol.Source)
		}
		return vol
	}
	source, rest, _ := strings.Cut(asString(v), ":")
	target, _, _ := strings.Cut(rest, ":")
	if strings.HasPrefix(source, ".") || strings.HasPrefix(source, "/") {
		return volume{Bind: true, Source: absolute(root, source), Target: target}
	}
	return volume{Source: source, Target: target}
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
// Compose rejects, and variables are substituted as Compose does.
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
	if c, ok := app.DependsOn["db"]; !ok || c != "" {
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
