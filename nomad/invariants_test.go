package nomad_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/envoy"
	"github.com/portico-mesh/portico/mesh/entries"
)

// mesh is what mesh/entries configures: the services with defaults and
// which source may call which destination.
type mesh struct {
	services map[string]bool
	// allowed[destination][source] is true when some intention of the
	// destination allows the source (wholly or for some requests).
	allowed map[string]map[string]bool
}

func loadMesh(t *testing.T) mesh {
	t.Helper()
	list, err := entries.Load()
	if err != nil {
		t.Fatal(err)
	}
	m := mesh{services: map[string]bool{}, allowed: map[string]map[string]bool{}}
	for _, e := range list {
		switch entry := e.Entry.(type) {
		case *api.ServiceConfigEntry:
			m.services[entry.Name] = true
		case *api.ServiceIntentionsConfigEntry:
			for _, src := range entry.Sources {
				if allows(src) {
					if m.allowed[entry.Name] == nil {
						m.allowed[entry.Name] = map[string]bool{}
					}
					m.allowed[entry.Name][src.Name] = true
				}
			}
		}
	}
	if len(m.services) == 0 || len(m.allowed) == 0 {
		t.Fatal("mesh/entries: no service-defaults or no allowing intentions")
	}
	return m
}

func allows(src *api.SourceIntention) bool {
	if src.Action == api.IntentionActionAllow {
		return true
	}
	for _, p := range src.Permissions {
		if p.Action == api.IntentionActionAllow {
			return true
		}
	}
	return false
}

// invariant is one rule the jobs keep; it returns what breaks it.
type invariant struct {
	name  string
	check func(jobs []job, w world) []string
}

// world is what the jobs are held to.
type world struct {
	env     envSources
	mesh    mesh
	version string // the test value of var.version
	// pinnedTags are the image tags the repository's install scripts pin,
	// by image name: the jobs run what `make up` runs.
	pinnedTags map[string]string
}

func loadWorld(t *testing.T) world {
	t.Helper()
	rateLimit := scriptPin(t, ".ci/install-ratelimit.sh", "RATELIMIT_VERSION")
	return world{
		env: loadEnvSources(t), mesh: loadMesh(t), version: testVersion(t),
		pinnedTags: map[string]string{
			"envoy": "v" + scriptPin(t, ".ci/install-envoy.sh", "ENVOY_VERSION"),
			// A pseudo-version ends in the commit's first 12 hex digits.
			"ratelimit": rateLimit[strings.LastIndex(rateLimit, "-")+1:],
		},
	}
}

// invariants lists every rule, each once.
func invariants() []invariant {
	return []invariant{
		{"env vars are read by the task's program", checkEnv},
		{"self-registration is off where Nomad registers", checkNoSelfRegistration},
		{"service names are the mesh's", checkServiceNames},
		{"upstreams are allowed by intentions", checkUpstreams},
		{"images are pinned", checkImages},
		{"mesh services are checked on /readyz through the sidecar", checkReadiness},
		{"sidecars forward to where the service listens, on loopback", checkServicePorts},
		{"the ingress bootstrap is envoy.Ingress's", checkIngressBootstrap},
	}
}

func eachTask(jobs []job, f func(j job, g taskGroup, tk task)) {
	for _, j := range jobs {
		for _, g := range j.TaskGroups {
			for _, tk := range g.Tasks {
				f(j, g, tk)
			}
		}
	}
}

func checkEnv(jobs []job, w world) []string {
	var problems []string
	eachTask(jobs, func(j job, g taskGroup, tk task) {
		allowed, known := w.env.forImage(tk.image())
		if !known {
			problems = append(problems, fmt.Sprintf("%s: image %q runs no program the tests know", where(j, g, tk), tk.image()))
			return
		}
		for _, name := range tk.envNames() {
			if !allowed[name] {
				problems = append(problems, fmt.Sprintf("%s: sets %s, which %s never reads", where(j, g, tk), name, tk.image()))
			}
		}
	})
	return problems
}

// checkNoSelfRegistration: in a group whose service Nomad puts in the
// mesh, a program that registers itself when CONSUL_HTTP_ADDR is set must
// get it empty, or the catalog holds each instance twice.
func checkNoSelfRegistration(jobs []job, w world) []string {
	var problems []string
	eachTask(jobs, func(j job, g taskGroup, tk task) {
		if !slices.ContainsFunc(g.Services, service.inMesh) {
			return
		}
		if allowed, _ := w.env.forImage(tk.image()); !allowed["CONSUL_HTTP_ADDR"] {
			return
		}
		if v, set := tk.Env["CONSUL_HTTP_ADDR"]; !set || v != "" {
			problems = append(problems, fmt.Sprintf("%s: CONSUL_HTTP_ADDR must be set to \"\" (Nomad registers the service)", where(j, g, tk)))
		}
	})
	return problems
}

func checkServiceNames(jobs []job, w world) []string {
	var problems []string
	registered := map[string]bool{}
	for _, j := range jobs {
		for _, g := range j.TaskGroups {
			for _, s := range g.Services {
				registered[s.Name] = true
				if !w.mesh.services[s.Name] {
					problems = append(problems, fmt.Sprintf("job %s group %s: service %q has no service-defaults in mesh/entries", j.ID, g.Name, s.Name))
				}
			}
		}
	}
	for name := range w.mesh.services {
		if !registered[name] {
			problems = append(problems, fmt.Sprintf("mesh/entries configures %q, which no job registers", name))
		}
	}
	return problems
}

// upstreamAddr is how a task refers to a local upstream listener.
var upstreamAddr = regexp.MustCompile(`NOMAD_UPSTREAM_(?:ADDR|IP|PORT)_([A-Za-z0-9_-]+)`)

func checkUpstreams(jobs []job, w world) []string {
	var problems []string
	for _, j := range jobs {
		for _, g := range j.TaskGroups {
			declared := map[string]bool{}
			for _, s := range g.Services {
				for _, u := range s.upstreams() {
					declared[u.DestinationName] = true
					if !w.mesh.allowed[u.DestinationName][s.Name] {
						problems = append(problems, fmt.Sprintf("job %s group %s: upstream %s -> %s is allowed by no intention in mesh/entries", j.ID, g.Name, s.Name, u.DestinationName))
					}
				}
			}
			for _, tk := range g.Tasks {
				for name, value := range tk.Env {
					for _, m := range upstreamAddr.FindAllStringSubmatch(value, -1) {
						if !declared[m[1]] {
							problems = append(problems, fmt.Sprintf("%s: %s uses upstream %q, which the group does not declare", where(j, g, tk), name, m[1]))
						}
					}
				}
			}
		}
	}
	return problems
}

// checkImages: every task runs a Docker image with an explicit tag other
// than latest; Portico's own carry var.version, Envoy and the rate-limit
// service the versions the install scripts pin.
func checkImages(jobs []job, w world) []string {
	var problems []string
	eachTask(jobs, func(j job, g taskGroup, tk task) {
		image := tk.image()
		if tk.Driver != "docker" || image == "" {
			problems = append(problems, fmt.Sprintf("%s: driver %q without an image; every task runs a Docker image", where(j, g, tk), tk.Driver))
			return
		}
		_, tag := splitImage(image)
		switch {
		case tag == "" || tag == "latest":
			problems = append(problems, fmt.Sprintf("%s: image %q is not pinned to a version", where(j, g, tk), image))
		case w.env.portico[imageName(image)] != nil && tag != w.version:
			problems = append(problems, fmt.Sprintf("%s: image %q does not carry var.version (%s)", where(j, g, tk), image, w.version))
		case w.pinnedTags[imageName(image)] != "" && tag != w.pinnedTags[imageName(image)]:
			problems = append(problems, fmt.Sprintf("%s: image %q is not the version the repository pins (%s)", where(j, g, tk), image, w.pinnedTags[imageName(image)]))
		}
	})
	return problems
}

// splitImage splits "registry:5000/repo:tag" into repository and tag.
func splitImage(image string) (repo, tag string) {
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[:colon], image[colon+1:]
	}
	return image, ""
}

func checkReadiness(jobs []job, _ world) []string {
	var problems []string
	for _, j := range jobs {
		for _, g := range j.TaskGroups {
			for _, s := range g.Services {
				if !s.inMesh() {
					continue
				}
				if !slices.ContainsFunc(s.Checks, func(c check) bool { return c.Type == "http" && c.Path == "/readyz" && c.Expose }) {
					problems = append(problems, fmt.Sprintf("job %s group %s: service %s has no http check of /readyz with expose = true", j.ID, g.Name, s.Name))
				}
			}
		}
	}
	return problems
}

// checkServicePorts: the port a mesh service declares (its sidecar's local
// service port) is the one its task listens on (HTTP_ADDR), and that
// address is the allocation's loopback, so the sidecar is the only way in.
func checkServicePorts(jobs []job, _ world) []string {
	var problems []string
	for _, j := range jobs {
		for _, g := range j.TaskGroups {
			for _, s := range g.Services {
				if !s.inMesh() {
					continue
				}
				want := "127.0.0.1:" + s.PortLabel
				if !slices.ContainsFunc(g.Tasks, func(tk task) bool { return tk.Env["HTTP_ADDR"] == want }) {
					problems = append(problems, fmt.Sprintf("job %s group %s: service %s is on port %s, but no task has HTTP_ADDR=%s", j.ID, g.Name, s.Name, s.PortLabel, want))
				}
			}
		}
	}
	return problems
}

// The ingress bootstrap of the jobs, with what the job fills in per
// allocation, and the ports of its group.
const (
	bootstrapPath     = "local/bootstrap.yaml"
	nodeIDExpr        = `{{ env "NOMAD_ALLOC_ID" }}`
	outlierLogExpr    = `{{ env "NOMAD_ALLOC_DIR" }}/logs/ingress-outlier.log`
	ingressAdminPort  = 19000
	ingressXDSPort    = 18000
	ingressMetricPort = 19100
)

// checkIngressBootstrap: the Envoy tasks' bootstrap is the one
// envoy.Ingress renders for `make up`, so the two cannot drift apart.
func checkIngressBootstrap(jobs []job, _ world) []string {
	want, err := envoy.Ingress(envoy.IngressBootstrap{
		NodeID: nodeIDExpr, AdminPort: ingressAdminPort, XDSHost: "127.0.0.1", XDSPort: ingressXDSPort,
		MetricsHost: "0.0.0.0", MetricsPort: ingressMetricPort, OutlierLog: outlierLogExpr,
	})
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	found := false
	eachTask(jobs, func(j job, g taskGroup, tk task) {
		if imageName(tk.image()) != "envoy" {
			return
		}
		found = true
		i := slices.IndexFunc(tk.Templates, func(tmpl jobTemplate) bool { return tmpl.DestPath == bootstrapPath })
		if i < 0 {
			problems = append(problems, fmt.Sprintf("%s: no template renders %s", where(j, g, tk), bootstrapPath))
			return
		}
		if got := tk.Templates[i].EmbeddedTmpl; got != string(want) {
			problems = append(problems, fmt.Sprintf("%s: %s differs from envoy.Ingress's rendering; make it:\n%s", where(j, g, tk), bootstrapPath, want))
		}
	})
	if !found {
		problems = append(problems, "no task runs the ingress Envoy")
	}
	return problems
}

func TestInvariantsHold(t *testing.T) {
	bin := nomadBinary(t)
	jobs := loadJobs(t, bin)
	w := loadWorld(t)
	for _, inv := range invariants() {
		t.Run(inv.name, func(t *testing.T) {
			for _, p := range inv.check(jobs, w) {
				t.Error(p)
			}
		})
	}
}

func loadJobs(t *testing.T, bin string) []job {
	t.Helper()
	var jobs []job
	for _, file := range jobFiles(t) {
		jobs = append(jobs, loadJob(t, bin, file))
	}
	return jobs
}

// testVersion is the version the test variables give the images.
func testVersion(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^version\s*=\s*"([^"]+)"`).FindStringSubmatch(readFile(t, testVars))
	if m == nil {
		t.Fatalf("%s sets no version", testVars)
	}
	return m[1]
}
