package nomad_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestFormatted: `nomad fmt -check` accepts every job as it is.
func TestFormatted(t *testing.T) {
	bin := nomadBinary(t)
	for _, file := range jobFiles(t) {
		t.Run(file, func(t *testing.T) {
			out, errOut, err := runNomad(t, bin, "fmt", "-check", file)
			if err != nil {
				t.Errorf("nomad fmt -check %s: %v; run `nomad fmt nomad/` (%s%s)", file, err, out, errOut)
			}
		})
	}
}

// TestValidate: Nomad's own validation accepts every job with the test
// variables. With no agent reachable, the CLI validates locally.
func TestValidate(t *testing.T) {
	bin := nomadBinary(t)
	for _, file := range jobFiles(t) {
		t.Run(file, func(t *testing.T) {
			out, errOut, err := runNomad(t, bin, "job", "validate", "-var-file", testVars, file)
			if err != nil {
				t.Fatalf("nomad job validate %s: %v\n%s%s", file, err, out, errOut)
			}
			if !strings.Contains(out, "Job validation successful") {
				t.Errorf("nomad job validate %s: no success message:\n%s%s", file, out, errOut)
			}
		})
	}
}

// TestValidateRejectsLatest: the version variable's validation refuses
// the one tag that pins nothing.
func TestValidateRejectsLatest(t *testing.T) {
	bin := nomadBinary(t)
	out, errOut, err := runNomad(t, bin, "job", "validate", "-var-file", testVars, "-var", "version=latest", "portico.nomad.hcl")
	if err == nil {
		t.Fatalf("nomad job validate accepted version=latest:\n%s", out)
	}
	if !strings.Contains(out+errOut, "not \"latest\"") {
		t.Errorf("nomad job validate failed, but not on the version:\n%s%s", out, errOut)
	}
}

// TestInvariantsCatchBreakage breaks each invariant in a copy of the
// jobs and expects it to be reported: a rule that cannot fail checks
// nothing.
func TestInvariantsCatchBreakage(t *testing.T) {
	bin := nomadBinary(t)
	jobs := loadJobs(t, bin)
	w := loadWorld(t)
	breakages := []struct {
		invariant string
		breakJobs func(t *testing.T, jobs []job)
	}{
		{"env vars are read by the task's program", func(t *testing.T, jobs []job) {
			taskNamed(t, jobs, "products").Env["PRODUCTS_PAGE_SIZE"] = "50"
		}},
		{"env vars are read by the task's program", func(t *testing.T, jobs []job) {
			// The edge reads EDGE_UPSTREAMS; products does not.
			taskNamed(t, jobs, "products").Env["EDGE_UPSTREAMS"] = "users=127.0.0.1:1"
		}},
		{"env vars are read by the task's program", func(t *testing.T, jobs []job) {
			tk := taskNamed(t, jobs, "users")
			tk.Templates = append(tk.Templates, jobTemplate{Envvars: true, EmbeddedTmpl: "USERS_LOG_LEVEL=debug\n"})
		}},
		{"self-registration is off where Nomad registers", func(t *testing.T, jobs []job) {
			delete(taskNamed(t, jobs, "users").Env, "CONSUL_HTTP_ADDR")
		}},
		{"self-registration is off where Nomad registers", func(t *testing.T, jobs []job) {
			taskNamed(t, jobs, "edge").Env["CONSUL_HTTP_ADDR"] = "127.0.0.1:8500"
		}},
		{"service names are the mesh's", func(t *testing.T, jobs []job) {
			serviceNamed(t, jobs, "products").Name = "products-api"
		}},
		{"upstreams are allowed by intentions", func(t *testing.T, jobs []job) {
			// Nothing allows users -> products.
			s := serviceNamed(t, jobs, "users")
			s.Connect.SidecarService.Proxy = &proxy{Upstreams: []upstream{{DestinationName: "products", LocalBindPort: 19202}}}
		}},
		{"upstreams are allowed by intentions", func(t *testing.T, jobs []job) {
			env := taskNamed(t, jobs, "edge").Env
			env["EDGE_UPSTREAMS"] += ",edge=${NOMAD_UPSTREAM_ADDR_edge}"
		}},
		{"images are pinned", func(t *testing.T, jobs []job) {
			taskNamed(t, jobs, "ratelimit").Config["image"] = "portico/ratelimit:latest"
		}},
		{"images are pinned", func(t *testing.T, jobs []job) {
			taskNamed(t, jobs, "ingress").Config["image"] = "docker.io/envoyproxy/envoy"
		}},
		{"images are pinned", func(t *testing.T, jobs []job) {
			taskNamed(t, jobs, "edge").Config["image"] = "portico/edge:1.0.0"
		}},
		{"images are pinned", func(t *testing.T, jobs []job) {
			taskNamed(t, jobs, "ingress").Config["image"] = "docker.io/envoyproxy/envoy:v1.35.0"
		}},
		{"mesh services are checked on /readyz through the sidecar", func(t *testing.T, jobs []job) {
			serviceNamed(t, jobs, "edge").Checks[0].Expose = false
		}},
		{"sidecars forward to where the service listens, on loopback", func(t *testing.T, jobs []job) {
			serviceNamed(t, jobs, "products").PortLabel = "8083"
		}},
		{"sidecars forward to where the service listens, on loopback", func(t *testing.T, jobs []job) {
			taskNamed(t, jobs, "users").Env["HTTP_ADDR"] = "0.0.0.0:8081"
		}},
		{"the ingress bootstrap is envoy.Ingress's", func(t *testing.T, jobs []job) {
			tk := taskNamed(t, jobs, "ingress")
			for i := range tk.Templates {
				tk.Templates[i].EmbeddedTmpl = strings.Replace(tk.Templates[i].EmbeddedTmpl, "port_value: 18000", "port_value: 18002", 1)
			}
		}},
	}
	covered := map[string]bool{}
	for _, b := range breakages {
		covered[b.invariant] = true
	}
	for _, inv := range invariants() {
		if !covered[inv.name] {
			t.Errorf("invariant %q is never broken here, so nothing shows it can fail", inv.name)
		}
	}
	for _, b := range breakages {
		broken := copyJobs(t, jobs)
		b.breakJobs(t, broken)
		if problems := invariantNamed(t, b.invariant).check(broken, w); len(problems) == 0 {
			t.Errorf("%q did not notice a breakage", b.invariant)
		} else {
			t.Logf("%s: %s", b.invariant, firstLine(problems[0]))
		}
	}
}

func invariantNamed(t *testing.T, name string) invariant {
	t.Helper()
	for _, inv := range invariants() {
		if inv.name == name {
			return inv
		}
	}
	t.Fatalf("no invariant %q", name)
	return invariant{}
}

// taskNamed returns the only task of that name across the jobs.
func taskNamed(t *testing.T, jobs []job, name string) *task {
	t.Helper()
	for _, j := range jobs {
		for gi := range j.TaskGroups {
			for ti := range j.TaskGroups[gi].Tasks {
				if tk := &j.TaskGroups[gi].Tasks[ti]; tk.Name == name {
					return tk
				}
			}
		}
	}
	t.Fatalf("no task %q", name)
	return nil
}

func serviceNamed(t *testing.T, jobs []job, name string) *service {
	t.Helper()
	for _, j := range jobs {
		for gi := range j.TaskGroups {
			for si := range j.TaskGroups[gi].Services {
				if s := &j.TaskGroups[gi].Services[si]; s.Name == name {
					return s
				}
			}
		}
	}
	t.Fatalf("no service %q", name)
	return nil
}

func copyJobs(t *testing.T, jobs []job) []job {
	t.Helper()
	b, err := json.Marshal(jobs)
	if err != nil {
		t.Fatal(err)
	}
	var out []job
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
