package mesh_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/portico-mesh/portico/mesh/entries"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

const (
	setupTimeout = 3 * time.Minute
	stopTimeout  = 30 * time.Second
	// checkInterval paces the services' Consul checks, short so that a
	// killed instance is noticed quickly.
	checkInterval = 500 * time.Millisecond
)

// instance is a service process registered in Consul, with its sidecar.
type instance struct {
	id      string
	service string
	port    int // the service's own port, loopback only
	cmd     localenv.Command

	mu      sync.Mutex
	proc    *localenv.Process
	sidecar *localenv.Sidecar
}

func (i *instance) url() string { return "http://" + loopback(i.port) }

func (i *instance) process() *localenv.Process {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.proc
}

// client is a test service in the mesh: no process of its own, only a
// registration and a sidecar whose upstream listeners the test calls.
type client struct {
	id          string
	name        string
	sidecarPort int
	upstreams   map[string]int // destination -> local port
	sidecar     *localenv.Sidecar
}

// upstream returns the base URL of the local listener for destination.
func (c *client) upstream(destination string) string {
	return "http://" + loopback(c.upstreams[destination])
}

// meshEnv is the whole topology of a test run.
type meshEnv struct {
	consul   *localenv.Consul
	api      *api.Client
	dir      string
	users    *instance
	products []*instance
	echo     *instance // an httptest server with a sidecar, protocol http
	tcpEcho  *instance // the same with protocol tcp (L4 intentions)
	ingress  *client   // upstreams users, products, users_service
	edge     *client   // upstreams users, products
	probe    *client   // "meshclient", upstreams echo and tcpecho

	mu   sync.Mutex
	pids []int // every process started, checked for leftovers at the end
}

func (e *meshEnv) started(pid int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pids = append(e.pids, pid)
}

// requireAllStopped runs after every other cleanup: none of the processes
// the test started may still run.
func (e *meshEnv) requireAllStopped(t *testing.T) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, pid := range e.pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue // gone
		}
		// The state follows the command name in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z") {
			t.Errorf("process %d still runs after the test: %s", pid, b)
		}
	}
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func freePort(t *testing.T) int {
	t.Helper()
	p, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// setup starts everything; t.Cleanup stops it in reverse order.
func setup(t *testing.T) *meshEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	begin := time.Now()

	e := &meshEnv{}
	// Registered first, so it runs last.
	t.Cleanup(func() { e.requireAllStopped(t) })
	bins := buildServices(ctx, t)
	e.dir = t.TempDir()
	e.consul = localenvtest.StartConsul(t)
	e.started(e.consul.Pid())
	var err error
	if e.api, err = e.consul.Client(); err != nil {
		t.Fatal(err)
	}
	if err := entries.Apply(ctx, e.api); err != nil {
		t.Fatal(err)
	}
	t.Logf("setup: consul and mesh entries ready after %v", time.Since(begin).Round(time.Millisecond))

	usersDB := createDatabase(ctx, t, "users")
	productsDB := createDatabase(ctx, t, "products")
	e.users = e.newInstance(t, bins, "users", "users-1", usersDB, "JWT_KEYS_DIR="+filepath.Join(e.dir, "keys"))
	e.products = []*instance{
		e.newInstance(t, bins, "products", "products-1", productsDB),
		e.newInstance(t, bins, "products", "products-2", productsDB),
	}
	// users first: it and products migrate different databases, but two
	// products instances starting together take turns on the lock.
	for _, inst := range append([]*instance{e.users}, e.products...) {
		e.startProcess(ctx, t, inst)
	}
	t.Logf("setup: services ready after %v", time.Since(begin).Round(time.Millisecond))

	e.echo = e.startEcho(t, "echo", "http")
	e.tcpEcho = e.startEcho(t, "tcpecho", "tcp")
	e.ingress = e.registerClient(t, "ingress", "users", "products", "users_service")
	e.edge = e.registerClient(t, "edge", "users", "products")
	e.probe = e.registerClient(t, "meshclient", "echo", "tcpecho")

	// Sidecars start concurrently: each waits seconds for its first xDS
	// round, mostly idle.
	var wg sync.WaitGroup
	errs := make(chan error, 9)
	for _, inst := range []*instance{e.users, e.products[0], e.products[1], e.echo, e.tcpEcho} {
		wg.Go(func() { errs <- e.startInstanceSidecar(ctx, t, inst) })
	}
	for _, c := range []*client{e.ingress, e.edge, e.probe} {
		wg.Go(func() {
			s, err := e.startSidecar(ctx, t, c.id)
			c.sidecar = s
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, svc := range []struct {
		name string
		n    int
	}{{"users", 1}, {"products", 2}, {"echo", 1}, {"tcpecho", 1}} {
		e.waitHealthyEndpoints(ctx, t, svc.name, svc.n)
	}
	// Consul reporting an endpoint healthy does not mean every client's
	// sidecar has it yet: wait until each upstream answers GETs (which
	// every client may send), several in a row so that every instance
	// behind it has answered (seen under load: one products instance
	// served while the other's TLS path was not ready yet).
	for _, c := range []*client{e.ingress, e.edge, e.probe} {
		for dest := range c.upstreams {
			err := localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
				for range 6 {
					status, body, err := request(ctx, http.MethodGet, c.upstream(dest)+"/readyz")
					if err != nil || status != http.StatusOK {
						return fmt.Errorf("%s -> %s: %d %.80q: %w", c.name, dest, status, body, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("upstream not ready: %v", err)
			}
		}
	}
	t.Logf("setup: whole mesh ready after %v", time.Since(begin).Round(time.Millisecond))
	return e
}

// buildServices builds the users and products binaries of this checkout.
func buildServices(ctx context.Context, t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go toolchain not on PATH: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	begin := time.Now()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", dir+string(filepath.Separator), "./services/cmd/users", "./services/cmd/products")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build services: %v\n%s", err, out)
	}
	t.Logf("setup: built users and products in %v", time.Since(begin).Round(time.Millisecond))
	return dir
}

// createDatabase creates a database of its own for this run and drops it
// at cleanup.
func createDatabase(ctx context.Context, t *testing.T, prefix string) string {
	t.Helper()
	adminURL := localenvtest.PostgresURL(t)
	raw := make([]byte, 4)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	name := "mesh_" + prefix + "_" + hex.EncodeToString(raw)
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func (e *meshEnv) newInstance(t *testing.T, bins, service, id, databaseURL string, extraEnv ...string) *instance {
	t.Helper()
	inst := &instance{id: id, service: service, port: freePort(t)}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + e.dir,
		"HTTP_ADDR=" + loopback(inst.port),
		"DATABASE_URL=" + databaseURL,
		"AMQP_URL=" + localenvtest.AMQPURL(t),
		"LOG_LEVEL=warn",
		"CONSUL_HTTP_ADDR=" + e.consul.HTTPAddr(),
		"SERVICE_ID=" + id,
		"SIDECAR_PORT=" + strconv.Itoa(freePort(t)),
		"CONSUL_CHECK_INTERVAL=" + checkInterval.String(),
		"SHUTDOWN_TIMEOUT=5s",
	}
	inst.cmd = localenv.Command{
		Name: id, Path: filepath.Join(bins, service), Env: append(env, extraEnv...), Dir: e.dir,
		LogPath: filepath.Join(e.dir, id+".log"),
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if p := inst.process(); p != nil {
			if err := p.Stop(ctx); err != nil {
				t.Errorf("stop %s: %v", id, err)
			}
		}
	})
	return inst
}

// startProcess starts inst's process and waits until it is ready and has
// registered itself.
func (e *meshEnv) startProcess(ctx context.Context, t *testing.T, inst *instance) {
	t.Helper()
	p, err := localenv.StartProcess(inst.cmd)
	if err != nil {
		t.Fatal(err)
	}
	inst.mu.Lock()
	inst.proc = p
	inst.mu.Unlock()
	e.started(p.Pid())
	err = localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		select {
		case <-p.Done():
			return localenv.StopPolling(fmt.Errorf("%s exited: %w\n%s", inst.id, p.Err(), p.LogTail(30)))
		default:
		}
		if status, _, err := request(ctx, http.MethodGet, inst.url()+"/readyz"); err != nil || status != http.StatusOK {
			return fmt.Errorf("%s not ready: %d: %w", inst.id, status, err)
		}
		_, _, err := e.api.Agent().Service(inst.id+"-sidecar-proxy", (&api.QueryOptions{}).WithContext(ctx))
		return err
	})
	if err != nil {
		t.Fatalf("start %s: %v\n%s", inst.id, err, p.LogTail(30))
	}
}

func (e *meshEnv) startInstanceSidecar(ctx context.Context, t *testing.T, inst *instance) error {
	s, err := e.startSidecar(ctx, t, inst.id)
	inst.mu.Lock()
	inst.sidecar = s
	inst.mu.Unlock()
	return err
}

func (e *meshEnv) startSidecar(ctx context.Context, t *testing.T, id string) (*localenv.Sidecar, error) {
	s, err := localenv.StartSidecar(ctx, localenv.SidecarOptions{Consul: e.consul, SidecarFor: id, Dir: e.dir})
	if err != nil {
		return nil, err
	}
	e.started(s.Pid())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop sidecar of %s: %v", id, err)
		}
	})
	return s, nil
}

// startEcho runs an in-process HTTP server registered as name, speaking
// protocol (http or tcp) in the mesh and open to every service in it (an
// exact-destination, wildcard-source allow outranks the default deny), so
// that a deny intention for one caller and its removal can be observed.
func (e *meshEnv) startEcho(t *testing.T, name, protocol string) *instance {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "echo")
	}))
	t.Cleanup(srv.Close)
	inst := &instance{id: name + "-1", service: name, port: srv.Listener.Addr().(*net.TCPAddr).Port}
	defaults := &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: name, Protocol: protocol}
	if _, _, err := e.api.ConfigEntries().Set(defaults, nil); err != nil {
		t.Fatal(err)
	}
	pub := freePort(t)
	reg := &api.AgentServiceRegistration{
		ID: inst.id, Name: inst.service, Address: "127.0.0.1", Port: inst.port,
		Check: &api.AgentServiceCheck{HTTP: srv.URL, Interval: checkInterval.String()},
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Address: "127.0.0.1", Port: pub,
			Checks: api.AgentServiceChecks{
				{Name: "listening", TCP: loopback(pub), Interval: checkInterval.String()},
				{Name: "alias", AliasService: inst.id},
			},
		}},
	}
	if err := e.api.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	entry := &api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions, Name: name,
		Sources: []*api.SourceIntention{{Name: "*", Action: api.IntentionActionAllow}},
	}
	if _, _, err := e.api.ConfigEntries().Set(entry, nil); err != nil {
		t.Fatal(err)
	}
	return inst
}

// registerClient registers a test client called name with a sidecar that
// has a local listener for each destination.
func (e *meshEnv) registerClient(t *testing.T, name string, destinations ...string) *client {
	t.Helper()
	c := &client{id: name + "-test", name: name, sidecarPort: freePort(t), upstreams: map[string]int{}}
	var ups []api.Upstream
	for _, d := range destinations {
		c.upstreams[d] = freePort(t)
		ups = append(ups, api.Upstream{DestinationName: d, LocalBindAddress: "127.0.0.1", LocalBindPort: c.upstreams[d]})
	}
	reg := &api.AgentServiceRegistration{
		ID: c.id, Name: name, Address: "127.0.0.1", Port: freePort(t),
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Address: "127.0.0.1", Port: c.sidecarPort,
			Proxy: &api.AgentServiceConnectProxyConfig{Upstreams: ups},
		}},
	}
	if err := e.api.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitHealthyEndpoints waits until Consul lists n passing sidecars of
// service, the endpoints its callers' sidecars route to.
func (e *meshEnv) waitHealthyEndpoints(ctx context.Context, t *testing.T, service string, n int) {
	t.Helper()
	err := localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		got, _, err := e.api.Health().Connect(service, "", true, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		if len(got) != n {
			return fmt.Errorf("%d of %d %s endpoints passing", len(got), n, service)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// request sends one request without keep-alive (each request is a fresh
// connection through the sidecars, as a new client would make) and returns
// the status and up to 4 KiB of the body.
func request(ctx context.Context, method, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// kill ends inst's process with SIGKILL, as a crash would: no
// deregistration, no drain.
func kill(t *testing.T, inst *instance) {
	t.Helper()
	p := inst.process()
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
}
