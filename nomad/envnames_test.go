package nomad_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portico-mesh/portico/e2e/envtags"
)

// envNames is the set of environment variables one program reads.
type envNames map[string]bool

// envSources knows, per image, which variables the program in it reads:
// Portico's binaries by their `env:"..."` struct tags, envoyproxy/ratelimit
// by its `envconfig:"..."` tags, Envoy none. An image is known by the last
// element of its repository ("portico/users", "docker.io/envoyproxy/envoy").
type envSources struct {
	// portico maps a binary name (Makefile BINARIES) to its variables.
	portico map[string]envNames
	// others maps the other programs' image names to their variables.
	others map[string]envNames
}

// loadEnvSources derives every allowed set from the Go sources.
func loadEnvSources(t *testing.T) envSources {
	t.Helper()
	root := repoRoot(t)
	src := envSources{portico: map[string]envNames{}, others: map[string]envNames{}}
	for name, pkg := range makefileBinaries(t, root) {
		names, err := envtags.Program(root, pkg)
		if err != nil {
			t.Fatal(err)
		}
		src.portico[name] = envNames(names)
	}
	// The services' configuration embeds services/platform/service's: a
	// set without its variables means the tags were not followed there.
	if !src.portico["users"]["DATABASE_URL"] {
		t.Fatal("users: DATABASE_URL not among its env struct tags; are the imported packages parsed?")
	}
	src.others["ratelimit"] = rateLimitEnv(t)
	src.others["envoy"] = envNames{}
	return src
}

// forImage returns the variables the program of image reads and whether
// the image is one the tests know.
func (s envSources) forImage(image string) (envNames, bool) {
	name := imageName(image)
	if names, ok := s.portico[name]; ok {
		return names, true
	}
	names, ok := s.others[name]
	return names, ok
}

// imageName is the last element of the image's repository.
func imageName(image string) string {
	repo, _ := splitImage(image)
	return repo[strings.LastIndex(repo, "/")+1:]
}

// makefileBinaries reads BINARIES (name=./package ...) from the Makefile:
// the binaries the images are built from.
func makefileBinaries(t *testing.T, root string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for line := range strings.Lines(text) {
		rest, ok := strings.CutPrefix(line, "BINARIES")
		if !ok {
			continue
		}
		rest = strings.TrimLeft(rest, " \t:=")
		out := map[string]string{}
		for _, field := range strings.Fields(rest) {
			name, pkg, ok := strings.Cut(field, "=")
			if !ok {
				t.Fatalf("Makefile BINARIES: %q is not name=package", field)
			}
			out[name] = pkg
		}
		return out
	}
	t.Fatal("Makefile: no BINARIES")
	return nil
}

// rateLimitEnv reads the `envconfig` tags of envoyproxy/ratelimit at the
// commit .ci/install-ratelimit.sh pins. `go mod download` finds its
// sources in the module cache (`make deps` put them there when it built
// the service) or fetches them; it runs outside this module, so that
// go.mod and go.sum stay untouched.
func rateLimitEnv(t *testing.T) envNames {
	t.Helper()
	module := "github.com/envoyproxy/ratelimit@" + scriptPin(t, ".ci/install-ratelimit.sh", "RATELIMIT_VERSION")
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v: run make deps", module, err)
	}
	var download struct{ Dir, Error string }
	if err := json.Unmarshal(out, &download); err != nil || download.Dir == "" {
		t.Fatalf("go mod download %s: no directory (%v %s): run make deps", module, err, download.Error)
	}
	tags, err := envtags.Tree(filepath.Join(download.Dir, "src"), "envconfig")
	if err != nil {
		t.Fatal(err)
	}
	names := envNames(tags)
	if !names["REDIS_URL"] {
		t.Fatalf("%s: no envconfig tag REDIS_URL; have the settings moved?", module)
	}
	return names
}
