package nomad_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// TestServerAcceptsJobs submits every job to a Nomad server of its own,
// which runs what local validation cannot: the admission hooks that add
// the Connect sidecar tasks and turn `expose = true` checks into exposed
// paths and ports. The server has no client, so nothing is placed (that
// would need Docker and CNI plugins); the plan says so and still has to
// succeed.
func TestServerAcceptsJobs(t *testing.T) {
	bin := nomadBinary(t)
	addr := startServer(t, bin)
	for _, file := range jobFiles(t) {
		t.Run(file, func(t *testing.T) {
			// Exit code 1: the plan would create allocations.
			out, errOut, err := runNomadAt(t, bin, addr, "job", "plan", "-var-file", testVars, file)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "+ Job: ") {
				t.Fatalf("nomad job plan %s: %v\n%s%s", file, err, out, errOut)
			}
			if out, errOut, err := runNomadAt(t, bin, addr, "job", "run", "-detach", "-var-file", testVars, file); err != nil {
				t.Fatalf("nomad job run %s: %v\n%s%s", file, err, out, errOut)
			}
			submitted := loadJob(t, bin, file)
			out, errOut, err = runNomadAt(t, bin, addr, "job", "inspect", submitted.ID)
			if err != nil {
				t.Fatalf("nomad job inspect %s: %v\n%s", submitted.ID, err, errOut)
			}
			registered := decodeJob(t, file, out)
			for _, p := range checkAdmitted(registered) {
				t.Error(p)
			}
			// The check notices a job the hooks did not get to.
			if len(checkAdmitted(submitted)) == 0 {
				t.Error("checkAdmitted finds nothing missing in the job as submitted, before the server's hooks")
			}
		})
	}
}

// checkAdmitted: every mesh service got its sidecar task, and each of its
// exposed checks a port of the group and an exposed path to the service.
func checkAdmitted(j job) []string {
	var problems []string
	for _, g := range j.TaskGroups {
		for _, s := range g.Services {
			if !s.inMesh() {
				continue
			}
			if !slices.ContainsFunc(g.Tasks, func(tk task) bool { return tk.Kind == "connect-proxy:"+s.Name }) {
				problems = append(problems, fmt.Sprintf("group %s: no sidecar task for %s", g.Name, s.Name))
			}
			servicePort, _ := strconv.Atoi(s.PortLabel)
			for _, c := range s.Checks {
				if !c.Expose {
					continue
				}
				if !groupHasPort(g, c.PortLabel) {
					problems = append(problems, fmt.Sprintf("group %s: check %q listens on %q, not a port of the group", g.Name, c.Name, c.PortLabel))
				}
				if !exposes(s, exposePath{Path: c.Path, ListenerPort: c.PortLabel, LocalPathPort: servicePort}) {
					problems = append(problems, fmt.Sprintf("group %s: the sidecar of %s does not expose %s of port %d", g.Name, s.Name, c.Path, servicePort))
				}
			}
		}
	}
	return problems
}

func groupHasPort(g taskGroup, label string) bool {
	for _, n := range g.Networks {
		if slices.ContainsFunc(n.DynamicPorts, func(p port) bool { return p.Label == label }) {
			return true
		}
	}
	return false
}

func exposes(s service, want exposePath) bool {
	p := s.Connect.SidecarService.Proxy
	return p != nil && p.Expose != nil && slices.Contains(p.Expose.Paths, want)
}

// startServer runs a single Nomad server (no client) on free loopback
// ports, data in a temporary directory, until the test ends, and returns
// its HTTP address once it has a leader.
func startServer(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	var ports [3]int
	for i := range ports {
		p, err := localenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	config := fmt.Sprintf(`
data_dir  = %q
bind_addr = "127.0.0.1"
log_level = "INFO"
ports {
  http = %d
  rpc  = %d
  serf = %d
}
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
server {
  enabled          = true
  bootstrap_expect = 1
}
client {
  enabled = false
}
disable_update_check = true
`, filepath.Join(dir, "data"), ports[0], ports[1], ports[2])
	configPath := filepath.Join(dir, "server.hcl")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	proc, err := localenv.StartProcess(localenv.Command{
		Name: "nomad", Path: bin, Args: []string{"agent", "-config", configPath},
		Env: append(os.Environ(), "NOMAD_ADDR=", "NOMAD_TOKEN="), LogPath: filepath.Join(dir, "nomad.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := proc.Stop(ctx); err != nil {
			t.Errorf("stop the nomad server: %v", err)
		}
	})
	addr := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = localenv.Poll(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		select {
		case <-proc.Done():
			return localenv.StopPolling(errors.Join(errors.New("nomad server exited"), proc.Err()))
		default:
		}
		return hasLeader(ctx, addr)
	})
	if err != nil {
		t.Fatalf("nomad server: %v\n%s", err, proc.LogTail(30))
	}
	return addr
}

// hasLeader succeeds once the server answers with an elected leader.
func hasLeader(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/v1/status/leader", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body [128]byte
	n, _ := resp.Body.Read(body[:])
	if resp.StatusCode != http.StatusOK || strings.Trim(string(body[:n]), "\"\n ") == "" {
		return fmt.Errorf("no leader yet (%s %q)", resp.Status, body[:n])
	}
	return nil
}
