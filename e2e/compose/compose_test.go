package compose

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/entries"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// load reads the whole deliverable from the repository.
func load(t *testing.T) *deliverable {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	d := &deliverable{root: root, project: loadProject(t), df: loadDockerfile(t)}
	for path, dst := range map[string]*[]byte{
		"observability/prometheus/prometheus.compose.yml": &d.promCompose,
		"observability/prometheus/prometheus.yml":         &d.promMakeUp,
		"mesh/images/images.txt":                          &d.localImages,
		"nomad/agent.dev.hcl":                             &d.nomadAgent,
	} {
		if *dst, err = os.ReadFile(filepath.Join(root, path)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// checks names every invariant; TestChecksCatchBreakage needs a breakage
// for each.
var checks = map[string]check{
	"images pinned":            checkImagesPinned,
	"healthchecks and restart": checkHealthAndRestart,
	"depends_on":               checkDependsOn,
	"published ports":          checkPublishedPorts,
	"pods":                     checkPods,
	"environment":              checkEnvironment,
	"files exist":              checkFilesExist,
	"mesh entries":             checkMeshEntries,
	"tracing":                  checkTracing,
	"dockerfile":               checkDockerfile,
	"prometheus":               checkPrometheus,
	"swagger ui":               checkSwaggerUI,
	"local images":             checkLocalImages,
}

func TestDeliverable(t *testing.T) {
	d := load(t)
	for name, c := range checks {
		t.Run(name, func(t *testing.T) { report(t, c(d)) })
	}
}

// TestTopologyOfMakeUp pins what runs: the instances and servers of `make
// up` (mesh/cmd/devstack), plus Grafana and the one-shots that replace the
// supervisor's steps.
func TestTopologyOfMakeUp(t *testing.T) {
	d := load(t)
	want := []string{
		"consul-server", "controlplane", "edge", "edge-agent", "edge-sidecar", "grafana", "ingress",
		"jaeger", "mesh-config", "postgres", "postgres-init", "products-1", "products-1-agent", "products-1-sidecar",
		"products-2", "products-2-agent", "products-2-sidecar", "prometheus", "rabbitmq", "ratelimit", "redis",
		"users", "users-agent", "users-sidecar",
	}
	if got := d.serviceNames(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("services\n got %v\nwant %v", got, want)
	}
}

// TestMeshEntryFiles: the files mesh-config globs are the entries make up
// applies (mesh/entries embeds *.json), so the two stacks share one mesh.
func TestMeshEntryFiles(t *testing.T) {
	list, err := entries.Load()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(repoRoot, "mesh", "entries", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(list) || len(files) == 0 {
		t.Fatalf("%d files, %d entries", len(files), len(list))
	}
	for i, e := range list {
		if filepath.Base(files[i]) != e.File {
			t.Errorf("file %d: %s, entry %s", i, filepath.Base(files[i]), e.File)
		}
	}
}

// TestPrometheusComposeConfig has promtool check the compose stack's
// Prometheus configuration and its rules, as observability does for make
// up's.
func TestPrometheusComposeConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		promtool = "/usr/bin/promtool"
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool, "check", "config",
		filepath.Join(repoRoot, "observability", "prometheus", "prometheus.compose.yml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// TestConsulAgentConfig has the pinned Consul validate the configuration
// every agent of the compose file is given with -hcl.
func TestConsulAgentConfig(t *testing.T) {
	consul, err := localenv.Binary("consul")
	if err != nil {
		t.Fatal(err)
	}
	d := load(t)
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		if !strings.HasPrefix(s.Image, consulImage) || len(s.Command) == 0 || s.Command[0] != "agent" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			config := filepath.Join(dir, "config")
			if err := os.Mkdir(config, 0o755); err != nil {
				t.Fatal(err)
			}
			// The image's entrypoint adds the data directory. The agent
			// binds to its container's one address; here, where several
			// may exist (Docker's bridge, for one), loopback stands in
			// for it, or Consul refuses to pick one.
			fragments := []string{`data_dir = "` + filepath.ToSlash(filepath.Join(dir, "data")) + `"`, `bind_addr = "127.0.0.1"`}
			for _, arg := range s.Command {
				if hcl, ok := strings.CutPrefix(arg, "-hcl="); ok {
					fragments = append(fragments, hcl)
				}
			}
			// One file per -hcl, merged in order as the agent merges them.
			for i, f := range fragments {
				if err := os.WriteFile(filepath.Join(config, fmt.Sprintf("%02d.hcl", i)), []byte(f+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, consul, "validate", config).CombinedOutput()
			if err != nil {
				t.Fatalf("consul validate %q: %v\n%s", fragments, err, out)
			}
		})
	}
}

// breakage changes the loaded deliverable so that one check must fail.
type breakage struct {
	check string
	name  string
	apply func(t *testing.T, d *deliverable)
}

// edit changes one service in place.
func edit(t *testing.T, d *deliverable, name string, f func(s *service)) {
	t.Helper()
	s, ok := d.project.Services[name]
	if !ok {
		t.Fatalf("no service %s", name)
	}
	f(s)
}

// replaceInDockerfile re-parses the Dockerfile with old replaced.
func replaceInDockerfile(t *testing.T, d *deliverable, old, replacement string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("Dockerfile has no %q", old)
	}
	if d.df, err = parseDockerfile(strings.Replace(string(b), old, replacement, 1)); err != nil {
		t.Fatal(err)
	}
}

var breakages = []breakage{
	{"local images", "image without a stand-in", func(t *testing.T, d *deliverable) {
		edit(t, d, "redis", func(s *service) { s.Image = "redis:7.4.3" })
	}},
	{"local images", "FROM without a stand-in", func(t *testing.T, d *deliverable) {
		replaceInDockerfile(t, d, "FROM golang:1.26.8 AS build", "FROM golang:1.26.9 AS build")
	}},
	{"local images", "folder missing", func(t *testing.T, d *deliverable) {
		d.localImages = []byte(strings.Replace(string(d.localImages), " postgres\n", " postgresql\n", 1))
	}},
	{"images pinned", "latest", func(t *testing.T, d *deliverable) {
		edit(t, d, "redis", func(s *service) { s.Image = "redis:latest" })
	}},
	{"images pinned", "untagged", func(t *testing.T, d *deliverable) {
		edit(t, d, "postgres", func(s *service) { s.Image = "postgres" })
	}},
	{"images pinned", "built as latest", func(t *testing.T, d *deliverable) {
		edit(t, d, "users", func(s *service) { s.Image = "portico/users:latest" })
	}},
	{"healthchecks and restart", "no healthcheck", func(t *testing.T, d *deliverable) {
		edit(t, d, "users-sidecar", func(s *service) { s.HealthCheck = nil })
	}},
	{"healthchecks and restart", "no restart policy", func(t *testing.T, d *deliverable) {
		edit(t, d, "redis", func(s *service) { s.Restart = "" })
	}},
	{"depends_on", "unknown service", func(t *testing.T, d *deliverable) {
		edit(t, d, "users", func(s *service) {
			s.DependsOn["nosuch"] = conditionHealthy
		})
	}},
	{"depends_on", "no condition", func(t *testing.T, d *deliverable) {
		edit(t, d, "ingress", func(s *service) {
			s.DependsOn["controlplane"] = "service_started"
		})
	}},
	{"published ports", "extra port", func(t *testing.T, d *deliverable) {
		edit(t, d, "redis", func(s *service) {
			s.Ports = append(s.Ports, port{HostIP: "127.0.0.1", Published: "6379", Target: "6379"})
		})
	}},
	{"published ports", "every address", func(t *testing.T, d *deliverable) {
		edit(t, d, "ingress", func(s *service) { s.Ports[0].HostIP = "" })
	}},
	{"pods", "sidecar outside the pod", func(t *testing.T, d *deliverable) {
		edit(t, d, "products-2-sidecar", func(s *service) { s.NetworkMode = "" })
	}},
	{"pods", "service outside the pod", func(t *testing.T, d *deliverable) {
		edit(t, d, "edge", func(s *service) { s.NetworkMode = "service:users-agent" })
	}},
	{"pods", "wrong instance id", func(t *testing.T, d *deliverable) {
		edit(t, d, "products-1", func(s *service) { s.Environment["SERVICE_ID"] = "products" })
	}},
	{"pods", "service on every address", func(t *testing.T, d *deliverable) {
		edit(t, d, "users", func(s *service) { s.Environment["HTTP_ADDR"] = "0.0.0.0:8081" })
	}},
	{"environment", "variable the service does not read", func(t *testing.T, d *deliverable) {
		edit(t, d, "users", func(s *service) { s.Environment["USERS_CACHE_SIZE"] = "1" })
	}},
	{"environment", "another service's variable", func(t *testing.T, d *deliverable) {
		edit(t, d, "products-1", func(s *service) { s.Environment["JWT_KEYS_DIR"] = "/keys" })
	}},
	{"environment", "variable ratelimit is not given under make up", func(t *testing.T, d *deliverable) {
		edit(t, d, "ratelimit", func(s *service) { s.Environment["RUNTIME_ROOT"] = "/data" })
	}},
	{"files exist", "missing mount", func(t *testing.T, d *deliverable) {
		edit(t, d, "grafana", func(s *service) {
			s.Volumes[0].Source = filepath.Join(d.root, "observability", "grafana", "no-such-dir")
		})
	}},
	{"files exist", "missing COPY source", func(t *testing.T, d *deliverable) {
		replaceInDockerfile(t, d, "COPY edge/apidocs/serve.go", "COPY edge/apidocs/version.go")
	}},
	{"files exist", "COPY of an ignored path", func(t *testing.T, d *deliverable) {
		replaceInDockerfile(t, d, "COPY .ci/gomodbuild.sh", "COPY .cache/bin/ratelimit")
	}},
	{"mesh entries", "consul config write instead", func(t *testing.T, d *deliverable) {
		edit(t, d, "mesh-config", func(s *service) {
			s.Build, s.Image = nil, "hashicorp/consul:1.22.5"
			s.Entrypoint = []string{"/bin/sh", "-ec"}
			s.Command = []string{`for f in /mesh/entries/*.json; do consul config write "$f"; done`}
		})
	}},
	{"mesh entries", "another server", func(t *testing.T, d *deliverable) {
		edit(t, d, "mesh-config", func(s *service) { s.Command[slices.Index(s.Command, "-http-addr")+1] = "http://127.0.0.1:8500" })
	}},
	{"tracing", "sidecars at the files' loopback collector", func(t *testing.T, d *deliverable) {
		edit(t, d, "mesh-config", func(s *service) { s.Command = s.Command[:slices.Index(s.Command, "-tracing-collector")] })
	}},
	{"tracing", "ingress untraced", func(t *testing.T, d *deliverable) {
		edit(t, d, "controlplane", func(s *service) { delete(s.Environment, "TRACING_COLLECTOR_ADDR") })
	}},
	{"tracing", "a service exports nowhere", func(t *testing.T, d *deliverable) {
		edit(t, d, "products-2", func(s *service) { delete(s.Environment, "OTEL_EXPORTER_OTLP_ENDPOINT") })
	}},
	{"environment", "an OTEL variable the SDK does not read", func(t *testing.T, d *deliverable) {
		edit(t, d, "edge", func(s *service) { s.Environment["OTEL_EXPORTER_ENDPOINT"] = "http://jaeger:4318" })
	}},
	{"dockerfile", "unpinned FROM", func(t *testing.T, d *deliverable) {
		replaceInDockerfile(t, d, "FROM debian:12.11-slim AS runtime", "FROM debian:bookworm-slim AS runtime")
	}},
	{"dockerfile", "unknown target", func(t *testing.T, d *deliverable) {
		edit(t, d, "controlplane", func(s *service) { s.Build.Target = "control-plane" })
	}},
	{"dockerfile", "binary of the Makefile not built", func(t *testing.T, d *deliverable) {
		replaceInDockerfile(t, d, "products=./services/cmd/products ", "")
	}},
	{"dockerfile", "other ldflags", func(t *testing.T, d *deliverable) {
		replaceInDockerfile(t, d, `-ldflags "-s -w -X main.version=${VERSION}"`, `-ldflags "-s -w"`)
	}},
	{"swagger ui", "assets elsewhere", func(t *testing.T, d *deliverable) {
		replaceInDockerfile(t, d, "/src/.cache/swagger-ui-dist /app/.cache/swagger-ui-dist", "/src/.cache/swagger-ui-dist /opt/swagger-ui-dist")
	}},
	{"swagger ui", "directory overridden", func(t *testing.T, d *deliverable) {
		edit(t, d, "edge", func(s *service) { s.Environment["EDGE_SWAGGER_UI_DIR"] = "/opt/swagger-ui" })
	}},
	{"prometheus", "instance missing", func(t *testing.T, d *deliverable) {
		d.promCompose = []byte(strings.Replace(string(d.promCompose), "instance: products-2,", "instance: products-two,", 1))
	}},
	{"prometheus", "target that is no service", func(t *testing.T, d *deliverable) {
		d.promCompose = []byte(strings.Replace(string(d.promCompose), `"ratelimit:18084"`, `"127.0.0.1:18084"`, 1))
	}},
	{"prometheus", "make up's configuration loaded", func(t *testing.T, d *deliverable) {
		edit(t, d, "prometheus", func(s *service) { s.Command[0] = "--config.file=/etc/prometheus/prometheus.yml" })
	}},
}

// TestChecksCatchBreakage breaks the deliverable in memory, once per entry
// of breakages, and requires the named check to report it: a check that
// cannot fail checks nothing. Every check has at least one breakage.
func TestChecksCatchBreakage(t *testing.T) {
	covered := map[string]bool{}
	for _, b := range breakages {
		c, ok := checks[b.check]
		if !ok {
			t.Fatalf("breakage %q: no check %q", b.name, b.check)
		}
		covered[b.check] = true
		t.Run(b.check+"/"+b.name, func(t *testing.T) {
			d := load(t)
			if problems := c(d); len(problems) > 0 {
				t.Fatalf("fails before the breakage: %v", problems)
			}
			b.apply(t, d)
			problems := c(d)
			if len(problems) == 0 {
				t.Fatal("the check did not notice")
			}
			t.Logf("noticed: %v", problems)
		})
	}
	for name := range checks {
		if !covered[name] {
			t.Errorf("check %q has no breakage", name)
		}
	}
}
