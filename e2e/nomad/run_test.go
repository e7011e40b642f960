//go:build nomadrun

// The Nomad run: nomad/portico.nomad.hcl placed for real by a Nomad dev
// agent (nomad/agent.dev.hcl) on this machine's Docker engine, with Consul
// Connect, then driven as a user would drive it. It builds images and
// starts a dozen containers (minutes, much CPU), so it is kept out of
// `make test` by its build tag; `make test-nomad` runs it.

package nomad

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/portico-mesh/portico/e2e/curlflow"
	"github.com/portico-mesh/portico/e2e/hostcmd"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

const (
	repoRoot = "../.."
	// The job's ingress_port: the test drives the flow through it.
	ingressPort = "5000"
	ingressURL  = "http://127.0.0.1:" + ingressPort
	jobName     = "portico"
	// The images `docker compose build` tags (PORTICO_VERSION's default).
	imageVersion = "dev"
	// The bootstrap admin the test stores in the users service's Nomad
	// Variable.
	adminEmail    = "admin@portico.local"
	adminPassword = "portico-nomad-admin"
	// Docker label of every container the Nomad driver starts, the
	// allocations' network holders included.
	allocLabel = "com.hashicorp.nomad.alloc_id"
)

// groups are the job's task groups and their default counts.
var groups = map[string]int{"users": 1, "products": 2, "edge": 1, "gateway": 1}

// runner runs the host commands of the test.
type runner struct{ hostcmd.Runner }

// TestNomadRun: the engine (started if none runs), the images (pulled or
// built as local stand-ins, mesh/images, and `docker compose build` for
// Portico's), PostgreSQL, Redis and RabbitMQ on the node's address, a
// Consul agent with mesh/entries written as nomad/README.md says, a Nomad
// dev agent with nomad/agent.dev.hcl, the users service's Nomad Variable,
// `nomad job run`, every allocation healthy, then the seed's curl flow and
// the docs through the ingress on port 5000, `nomad job stop -purge`, no
// container left, the agent stopped.
func TestNomadRun(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := net.Listen("tcp", "127.0.0.1:"+ingressPort); err != nil {
		t.Fatalf("port %s, the job's ingress_port, is taken (make up? compose?): %v", ingressPort, err)
	} else {
		l.Close()
	}
	bin := filepath.Join(root, ".cache", "bin")
	// consul and nomad from .cache/bin, for the test's commands and the
	// agent: Nomad bootstraps the sidecars with `consul connect envoy`.
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	r := runner{hostcmd.Runner{T: t, Root: root}}
	dir := sharedTempDir(t)

	checkNoStalePortMapping(t, r)

	r.Run(3*time.Minute, ".ci/dockerd.sh", "start")
	t.Cleanup(func() { r.Run(3*time.Minute, ".ci/dockerd.sh", "stop") })
	t.Log(r.Run(40*time.Minute, "mesh/images/build.sh"))
	// The Portico images the job names, as docker-compose.yml builds and
	// tags them: portico/<binary>:dev and portico/ratelimit:<pin> (the
	// products instances share one image).
	r.Run(40*time.Minute, "docker", "compose", "build", "users", "products-1", "edge", "controlplane", "ratelimit")

	host := nodeAddress(t)
	t.Logf("node address (default route's interface): %s", host)
	ctx := t.Context()
	pg, err := localenv.StartPostgres(ctx, localenv.PostgresOptions{Dir: filepath.Join(dir, "postgres"), Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServer(t, "postgres", pg.Stop) })
	createDatabases(t, pg.URL("postgres"), "users", "products")
	redis, err := localenv.StartRedis(ctx, localenv.RedisOptions{Dir: filepath.Join(dir, "redis"), Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServer(t, "redis", redis.Stop) })
	rabbit, err := localenv.StartRabbitMQ(ctx, localenv.RabbitMQOptions{Dir: filepath.Join(dir, "rabbitmq"), Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServer(t, "rabbitmq", rabbit.Close) })
	consul, err := localenv.StartConsul(ctx, localenv.ConsulOptions{Dir: filepath.Join(dir, "consul"), ClientHost: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServer(t, "consul", consul.Stop) })
	consulHTTPPort := consul.HTTPAddr()[strings.LastIndex(consul.HTTPAddr(), ":")+1:]

	// nomad/README.md, step 1: the mesh configuration.
	r.Env = append(r.Env, "CONSUL_HTTP_ADDR="+consul.HTTPAddr())
	files, err := filepath.Glob(filepath.Join(root, "mesh", "entries", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("mesh/entries: %v %v", files, err)
	}
	for _, f := range files {
		r.Run(time.Minute, "consul", "config", "write", f)
	}

	agent := startNomad(t, r, dir, consul)
	r.Env = append(r.Env, "NOMAD_ADDR="+agent.url)
	node := agent.waitNode(t)
	if got := node.Attributes["unique.network.ip-address"]; got != host {
		t.Fatalf("the Nomad client's address is %q, the servers listen on %s", got, host)
	}

	// nomad/README.md, step 2: the users service's secrets.
	keyFile := filepath.Join(dir, "signing.pem")
	writeSigningKey(t, keyFile)
	r.Run(time.Minute, "nomad", "var", "put", "nomad/jobs/portico/users",
		"jwt_signing_key=@"+keyFile, "bootstrap_admin_email="+adminEmail, "bootstrap_admin_password="+adminPassword)

	// Step 4: the job, with the test's servers as its variables.
	vars := map[string]string{
		"version":               imageVersion,
		"users_database_url":    fmt.Sprintf("postgres://postgres@%s/users?sslmode=disable", net.JoinHostPort(host, strconv.Itoa(pg.Port()))),
		"products_database_url": fmt.Sprintf("postgres://postgres@%s/products?sslmode=disable", net.JoinHostPort(host, strconv.Itoa(pg.Port()))),
		"amqp_url":              fmt.Sprintf("amqp://guest:guest@%s/", net.JoinHostPort(host, strconv.Itoa(rabbit.Port()))),
		"edge_redis_url":        fmt.Sprintf("redis://%s/0", net.JoinHostPort(host, strconv.Itoa(redis.Port()))),
		"ratelimit_redis_addr":  net.JoinHostPort(host, strconv.Itoa(redis.Port())),
		"consul_http_addr":      net.JoinHostPort(host, consulHTTPPort),
	}
	varFile := filepath.Join(dir, "portico.vars.hcl")
	writeVarFile(t, varFile, vars)
	jobFile := filepath.Join(root, "nomad", "portico.nomad.hcl")
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if t.Failed() {
				agent.report(t, r)
			}
			_, _ = r.Try(5*time.Minute, "nomad", "job", "stop", "-purge", "-yes", jobName)
			agent.waitAllocationsGone(t, r)
		}
	})
	start := time.Now()
	r.Run(5*time.Minute, "nomad", "job", "run", "-detach", "-var-file", varFile, jobFile)
	agent.waitHealthy(t)
	t.Logf("nomad job run: every allocation healthy after %v", time.Since(start).Round(time.Second))

	checkCatalog(t, consul)

	c := &curlflow.Client{T: t, BaseURL: ingressURL}
	admin := c.Login(ctx, adminEmail, adminPassword)
	t.Run("seed curl flow", func(t *testing.T) { curlflow.Seed(t, c.With(t), admin) })
	t.Run("docs", func(t *testing.T) { curlflow.Docs(t, c.With(t)) })
	if t.Failed() {
		agent.report(t, r)
	}

	start = time.Now()
	r.Run(5*time.Minute, "nomad", "job", "stop", "-purge", "-yes", jobName)
	stopped = true
	agent.waitAllocationsGone(t, r)
	t.Logf("nomad job stop -purge: every container gone after %v", time.Since(start).Round(time.Second))
	var job struct{ ID string }
	if notFound, err := agent.get(ctx, "/v1/job/"+jobName, &job); err != nil || !notFound {
		t.Errorf("after nomad job stop -purge the job is still there (%v): %+v", err, job)
	}
}

// checkCatalog: Consul lists what Nomad registered, once: each service at
// its group's count with a Connect sidecar, every instance passing (the
// services register nothing themselves: CONSUL_HTTP_ADDR is empty), and
// the ingress.
func checkCatalog(t *testing.T, consul *localenv.Consul) {
	client, err := consul.Client()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"users": 1, "products": 2, "edge": 1, "users-sidecar-proxy": 1,
		"products-sidecar-proxy": 2, "edge-sidecar-proxy": 1, "ingress": 1}
	localenvtest.Eventually(t, time.Minute, time.Second, "the catalog as the job declares it", func(ctx context.Context) error {
		q := (&api.QueryOptions{}).WithContext(ctx)
		for name, n := range want {
			all, _, err := client.Health().Service(name, "", false, q)
			if err != nil {
				return err
			}
			passing, _, err := client.Health().Service(name, "", true, q)
			if err != nil {
				return err
			}
			if len(all) != n || len(passing) != n {
				return fmt.Errorf("%s: %d instances, %d passing; want %d", name, len(all), len(passing), n)
			}
		}
		return nil
	})
}

// checkNoStalePortMapping fails early when the CNI port-mapping chain
// still forwards the ingress port to an allocation: a Nomad agent killed
// before its allocations were stopped leaves its mappings behind, and the
// first one shadows the new ingress's ("No route to host").
func checkNoStalePortMapping(t *testing.T, r runner) {
	out, err := r.Try(time.Minute, "iptables", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT")
	if err != nil {
		return // no chain: no mapping
	}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		i := slices.IndexFunc(f, func(s string) bool { return s == "--dports" || s == "--dport" })
		if i >= 0 && i+1 < len(f) && slices.Contains(strings.Split(f[i+1], ","), ingressPort) {
			t.Fatalf("iptables -t nat CNI-HOSTPORT-DNAT still maps port %s to an allocation of an earlier Nomad agent; "+
				"delete the rule and the chain it jumps to:\n%s", ingressPort, line)
		}
	}
}

// sharedTempDir is a directory for the servers that PostgreSQL, run as an
// unprivileged user when the test runs as root, can enter.
func sharedTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "nomadrun-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func stopServer(t *testing.T, what string, stop func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Errorf("stop %s: %v", what, err)
	}
}

// nodeAddress is the IPv4 address of the interface of the default route:
// the interface a -dev-connect Nomad agent fingerprints, whose address the
// allocations' sidecars are published at and the containers reach the
// host by.
func nodeAddress(t *testing.T) string {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[1] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(fields[0])
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := iface.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if ipnet, ok := a.(*net.IPNet); ok && ipnet.IP.To4() != nil {
				return ipnet.IP.String()
			}
		}
		t.Fatalf("the default route's interface %s has no IPv4 address", fields[0])
	}
	t.Fatal("no default route: the Nomad client would have no address for the allocations")
	return ""
}

func createDatabases(t *testing.T, url string, names ...string) {
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, name := range names {
		if _, err := conn.Exec(t.Context(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
}

// writeSigningKey writes an Ed25519 key in PKCS#8 PEM, as `openssl
// genpkey -algorithm ed25519` does (nomad/README.md, step 2).
func writeSigningKey(t *testing.T, path string) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeVarFile writes the job's variables as the variables file of
// nomad/README.md, step 4.
func writeVarFile(t *testing.T, path string, vars map[string]string) {
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "%s = %q\n", name, vars[name])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// nomadAgent is the dev agent the test started.
type nomadAgent struct {
	proc *localenv.Process
	url  string
}

// startNomad starts `nomad agent -dev-connect` with nomad/agent.dev.hcl and
// a second file of the test's own: free ports, the data directory, the
// Consul agent's addresses.
func startNomad(t *testing.T, r runner, dir string, consul *localenv.Consul) *nomadAgent {
	bin, err := localenv.Binary("nomad")
	if err != nil {
		t.Fatal(err)
	}
	var httpPort, rpcPort, serfPort int
	if err := localenv.FreePorts(&httpPort, &rpcPort, &serfPort); err != nil {
		t.Fatal(err)
	}
	// Nomad listens on Unix sockets under the data directory, at
	// alloc/<id>/alloc/tmp/consul_grpc.sock: 70 bytes more, within the
	// 107 a socket path may have (a longer one fails every allocation
	// with "bind: invalid argument").
	dataDir := filepath.Join(dir, "n")
	if len(dataDir)+70 > 107 {
		t.Fatalf("data directory %s: %d bytes, too long for the sockets Nomad puts under it", dataDir, len(dataDir))
	}
	overlay := filepath.Join(dir, "agent.test.hcl")
	conf := fmt.Sprintf(`# Written by e2e/nomad: what differs from nomad/agent.dev.hcl in the test.
data_dir = %q
ports {
  http = %d
  rpc  = %d
  serf = %d
}
consul {
  address      = %q
  grpc_address = %q
}
`, dataDir, httpPort, rpcPort, serfPort, consul.HTTPAddr(), consul.GRPCAddr())
	if err := os.WriteFile(overlay, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	proc, err := localenv.StartProcess(localenv.Command{
		Name: "nomad",
		Path: bin,
		Args: []string{"agent", "-dev-connect", "-log-level", "INFO",
			"-config", filepath.Join(r.Root, "nomad", "agent.dev.hcl"), "-config", overlay},
		Env:     append(os.Environ(), r.Env...),
		Dir:     dir,
		LogPath: filepath.Join(dir, "nomad.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &nomadAgent{proc: proc, url: "http://" + localenv.Loopback(httpPort)}
	t.Cleanup(func() {
		// The agent leaves its allocations' containers running when it
		// stops: the job is stopped first (above), the agent last.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := proc.Stop(ctx); err != nil {
			t.Errorf("stop the Nomad agent: %v", err)
		}
		if left := strings.TrimSpace(r.Run(time.Minute, "docker", "ps", "-aq", "--filter", "label="+allocLabel)); left != "" {
			t.Errorf("containers of Nomad allocations left after the agent stopped: %s", left)
		}
	})
	return a
}

// get decodes GET path of the agent's API into v; notFound reports 404.
func (a *nomadAgent) get(ctx context.Context, path string, v any) (notFound bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url+path, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return true, nil
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("GET %s: %s %s", path, resp.Status, b)
	}
	return false, json.NewDecoder(resp.Body).Decode(v)
}

type nomadNode struct {
	ID         string
	Status     string
	Attributes map[string]string
	Drivers    map[string]struct {
		Detected, Healthy bool
		HealthDescription string
	}
}

// waitNode waits for the client to be ready with a healthy Docker driver
// and the bridge network's CNI plugins, and returns it.
func (a *nomadAgent) waitNode(t *testing.T) nomadNode {
	var node nomadNode
	localenvtest.Eventually(t, 3*time.Minute, time.Second, "the Nomad client ready with Docker", func(ctx context.Context) error {
		select {
		case <-a.proc.Done():
			return fmt.Errorf("the agent exited: %w\n%s", a.proc.Err(), a.proc.LogTail(40))
		default:
		}
		var stubs []struct{ ID, Status string }
		if _, err := a.get(ctx, "/v1/nodes", &stubs); err != nil {
			return err
		}
		if len(stubs) != 1 || stubs[0].Status != "ready" {
			return fmt.Errorf("nodes: %+v", stubs)
		}
		if _, err := a.get(ctx, "/v1/node/"+stubs[0].ID, &node); err != nil {
			return err
		}
		if d := node.Drivers["docker"]; !d.Healthy {
			return fmt.Errorf("docker driver: %+v", d)
		}
		if node.Attributes["plugins.cni.version.bridge"] == "" {
			return errors.New("no CNI bridge plugin fingerprinted")
		}
		return nil
	})
	return node
}

type allocation struct {
	ID, TaskGroup, ClientStatus, DesiredStatus string
	DeploymentStatus                           *struct{ Healthy *bool }
	TaskStates                                 map[string]struct {
		State  string
		Failed bool
		Events []struct{ Type, DisplayMessage string }
	}
}

func (a *nomadAgent) allocations(ctx context.Context) ([]allocation, error) {
	var allocs []allocation
	notFound, err := a.get(ctx, "/v1/job/"+jobName+"/allocations?all=true", &allocs)
	if notFound {
		return nil, nil
	}
	return allocs, err
}

// waitHealthy waits for the job's deployment to succeed: every group at
// its count, every allocation running and healthy (its Consul checks
// passing for min_healthy_time).
func (a *nomadAgent) waitHealthy(t *testing.T) {
	localenvtest.Eventually(t, 15*time.Minute, 2*time.Second, "every allocation healthy", func(ctx context.Context) error {
		allocs, err := a.allocations(ctx)
		if err != nil {
			return err
		}
		healthy := map[string]int{}
		var waiting []string
		for _, al := range allocs {
			if al.DesiredStatus != "run" {
				continue
			}
			if al.ClientStatus == "running" && al.DeploymentStatus != nil && al.DeploymentStatus.Healthy != nil && *al.DeploymentStatus.Healthy {
				healthy[al.TaskGroup]++
				continue
			}
			waiting = append(waiting, fmt.Sprintf("%s %.8s: %s", al.TaskGroup, al.ID, al.ClientStatus))
		}
		for group, n := range groups {
			if healthy[group] != n {
				return fmt.Errorf("healthy %v, want %v; not yet: %v", healthy, groups, waiting)
			}
		}
		var dep struct{ Status, StatusDescription string }
		if _, err := a.get(ctx, "/v1/job/"+jobName+"/deployment", &dep); err != nil {
			return err
		}
		if dep.Status != "successful" {
			return fmt.Errorf("deployment %s: %s", dep.Status, dep.StatusDescription)
		}
		return nil
	})
}

// waitAllocationsGone waits for every allocation of the job to be stopped
// and its containers removed.
func (a *nomadAgent) waitAllocationsGone(t *testing.T, r runner) {
	localenvtest.Eventually(t, 5*time.Minute, 2*time.Second, "the job's allocations stopped", func(ctx context.Context) error {
		var allocs []allocation
		if _, err := a.get(ctx, "/v1/allocations", &allocs); err != nil {
			return err
		}
		for _, al := range allocs {
			if al.ClientStatus == "running" || al.ClientStatus == "pending" {
				return fmt.Errorf("%s %.8s still %s", al.TaskGroup, al.ID, al.ClientStatus)
			}
		}
		out, err := r.Try(time.Minute, "docker", "ps", "-aq", "--filter", "label="+allocLabel)
		if err != nil {
			return err
		}
		if left := strings.Fields(out); len(left) > 0 {
			return fmt.Errorf("%d containers of allocations remain", len(left))
		}
		return nil
	})
}

// report prints every allocation's status and the tail of its tasks' logs.
func (a *nomadAgent) report(t *testing.T, r runner) {
	allocs, err := a.allocations(context.Background())
	if err != nil {
		t.Logf("allocations: %v", err)
	}
	for _, al := range allocs {
		out, _ := r.Try(time.Minute, "nomad", "alloc", "status", al.ID)
		t.Logf("allocation %s (%s):\n%s", al.ID, al.TaskGroup, out)
		for task := range al.TaskStates {
			for _, stream := range []string{"-stdout", "-stderr"} {
				out, _ := r.Try(time.Minute, "nomad", "alloc", "logs", stream, "-tail", "-n", "30", al.ID, task)
				t.Logf("%s %s %s:\n%s", al.TaskGroup, task, stream, out)
			}
		}
	}
	t.Logf("nomad agent log (tail):\n%s", a.proc.LogTail(60))
}
