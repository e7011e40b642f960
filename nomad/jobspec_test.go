package nomad_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// testVars holds made-up values for the jobs' required variables.
const testVars = "testdata/ci.vars.hcl"

// job is the part of Nomad's JSON job (`nomad job run -output`) the
// invariants look at.
type job struct {
	ID         string
	TaskGroups []taskGroup
}

type taskGroup struct {
	Name     string
	Count    int
	Networks []network
	Services []service
	Tasks    []task
}

type network struct {
	Mode         string
	DynamicPorts []port
}

type port struct {
	Label string
}

type service struct {
	Name      string
	PortLabel string
	Connect   *connect
	Checks    []check
}

type connect struct {
	SidecarService *sidecarService
}

type sidecarService struct {
	Proxy *proxy
}

type proxy struct {
	Upstreams []upstream
	// Expose is filled in by the server, for checks with expose = true.
	Expose *struct {
		Paths []exposePath
	}
}

type exposePath struct {
	Path          string
	ListenerPort  string
	LocalPathPort int
}

type upstream struct {
	DestinationName string
	LocalBindPort   int
}

type check struct {
	Name      string
	Type      string
	Path      string
	Expose    bool
	PortLabel string
}

type task struct {
	Name string
	// Kind is "connect-proxy:<service>" for the sidecars Nomad adds.
	Kind      string
	Driver    string
	Config    map[string]any
	Env       map[string]string
	Templates []jobTemplate
}

type jobTemplate struct {
	EmbeddedTmpl string
	DestPath     string
	Envvars      bool
}

// upstreams lists the service's Connect upstreams (none without a proxy).
func (s service) upstreams() []upstream {
	if s.Connect == nil || s.Connect.SidecarService == nil || s.Connect.SidecarService.Proxy == nil {
		return nil
	}
	return s.Connect.SidecarService.Proxy.Upstreams
}

func (s service) inMesh() bool { return s.Connect != nil && s.Connect.SidecarService != nil }

// image is the task's Docker image, "" for other drivers.
func (t task) image() string {
	image, _ := t.Config["image"].(string)
	return image
}

// envLine is a NAME= line of a template rendered into the environment.
var envLine = regexp.MustCompile(`(?m)^[ \t]*([A-Za-z_][A-Za-z0-9_]*)=`)

// envNames lists every variable the task puts in its environment: its env
// block and the NAME= lines of its env templates.
func (t task) envNames() []string {
	var names []string
	for name := range t.Env {
		names = append(names, name)
	}
	for _, tmpl := range t.Templates {
		if !tmpl.Envvars {
			continue
		}
		for _, m := range envLine.FindAllStringSubmatch(tmpl.EmbeddedTmpl, -1) {
			names = append(names, m[1])
		}
	}
	return names
}

// repoRoot is the module root, one level above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// pinnedNomadVersion is the version .ci/install-nomad.sh installs.
func pinnedNomadVersion(t *testing.T) string {
	t.Helper()
	return scriptPin(t, ".ci/install-nomad.sh", "NOMAD_VERSION")
}

// scriptPin reads VAR's default from a line VAR="${VAR:-value}" of an
// install script, so the tests follow the pins instead of repeating them.
func scriptPin(t *testing.T, script, variable string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), script))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^` + variable + `="\$\{` + variable + `:-([^}]+)\}"`)
	m := re.FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: no default for %s", script, variable)
	}
	return string(m[1])
}

// nomadBinary is the pinned Nomad that `make deps` builds. A missing or
// different binary fails the test: the jobs are only known to be valid
// for the version they are checked with.
func nomadBinary(t *testing.T) string {
	t.Helper()
	bin, err := localenv.Binary("nomad")
	if err != nil {
		t.Fatalf("%v: run make deps", err)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v: run make deps", bin, err)
	}
	want := "Nomad " + pinnedNomadVersion(t)
	if first, _, _ := strings.Cut(string(out), "\n"); first != want && !strings.HasPrefix(first, want+" ") {
		t.Fatalf("%s reports %q, want %s: run make deps", bin, first, want)
	}
	return bin
}

// jobFiles lists the job specifications of this directory.
func jobFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no *.nomad.hcl job specifications in nomad/")
	}
	return files
}

// runNomad runs the Nomad CLI away from any agent: NOMAD_ADDR names a
// loopback port nothing listens on, so a command that would ask an agent
// falls back to local work or fails, and never reaches a real cluster.
func runNomad(t *testing.T, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runNomadAt(t, bin, "http://127.0.0.1:1", args...)
}

// runNomadAt runs the Nomad CLI against the agent at addr.
func runNomadAt(t *testing.T, bin, addr string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+addr, "NOMAD_TOKEN=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// loadJob converts a job specification to Nomad's JSON form with the
// test variables and decodes it.
func loadJob(t *testing.T, bin, file string) job {
	t.Helper()
	out, errOut, err := runNomad(t, bin, "job", "run", "-output", "-var-file", testVars, file)
	if err != nil {
		t.Fatalf("nomad job run -output %s: %v\n%s", file, err, errOut)
	}
	return decodeJob(t, file, out)
}

// decodeJob decodes {"Job": ...}, as `job run -output` and `job inspect`
// print it.
func decodeJob(t *testing.T, file, out string) job {
	t.Helper()
	var wrapped struct{ Job job }
	if err := json.Unmarshal([]byte(out), &wrapped); err != nil {
		t.Fatalf("decode the JSON of %s: %v", file, err)
	}
	if len(wrapped.Job.TaskGroups) == 0 {
		t.Fatalf("%s: the job has no task groups", file)
	}
	return wrapped.Job
}

// where names a task in failure messages.
func where(j job, g taskGroup, tk task) string {
	return fmt.Sprintf("job %s group %s task %s", j.ID, g.Name, tk.Name)
}
