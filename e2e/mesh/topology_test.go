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
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

const (
	setupTimeout = 3 * time.Minute
	stopTimeout  = 30 * time.Second
	// checkInterval paces the services' Consul checks, short so that a
	// killed instance is noticed quickly.
	checkInterval = 500 * time.Millisecond
)

// instance is a service in the mesh with its sidecar: a Portico binary
// (svc) or an in-process echo server (svc nil).
type instance struct {
	id      string
	service string
	port    int               // the service's own port, loopback only
	svc     *stack.Instance   // nil for an echo server
	sidecar *localenv.Sidecar // set once started
}

func (i *instance) process() *localenv.Process { return i.svc.Process() }

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

// meshEnv is the whole topology of a test run; stack owns its processes.
type meshEnv struct {
	stack    *stack.Stack
	consul   *localenv.Consul
	api      *api.Client
	users    *instance
	products []*instance
	echo     *instance // an httptest server with a sidecar, protocol http
	tcpEcho  *instance // the same with protocol tcp (L4 intentions)
	ingress  *client   // upstreams users, products, users_service
	edge     *client   // upstreams users, products
	probe    *client   // "meshclient", upstreams echo and tcpecho
}

var loopback = localenv.Loopback

func freePort(t *testing.T) int {
	t.Helper()
	p, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// setup starts everything on a stack that t.Cleanup stops, in reverse
// order, checking that no process is left.
func setup(t *testing.T) *meshEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	begin := time.Now()

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	st, err := stack.New(stack.Config{Root: root, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*stopTimeout)
		defer cancel()
		if err := st.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	e := &meshEnv{stack: st}
	bins := st.Path("bin")
	if err := stack.Build(ctx, root, bins, stack.UsersCommand, stack.ProductsCommand); err != nil {
		t.Fatal(err)
	}
	t.Logf("setup: built users and products in %v", time.Since(begin).Round(time.Millisecond))
	if e.consul, err = st.StartConsul(ctx, localenv.ConsulOptions{}); err != nil {
		t.Fatal(err)
	}
	if e.api, err = e.consul.Client(); err != nil {
		t.Fatal(err)
	}
	if err := stack.ApplyMeshEntries(ctx, e.consul); err != nil {
		t.Fatal(err)
	}
	t.Logf("setup: consul and mesh entries ready after %v", time.Since(begin).Round(time.Millisecond))

	usersDB := ownDatabase(ctx, t, "users")
	productsDB := ownDatabase(ctx, t, "products")
	configOf := func(command, id, databaseURL string, extraEnv ...string) stack.InstanceConfig {
		return stack.InstanceConfig{
			ID: id, Binary: stack.Binary(bins, command), Consul: e.consul, AMQPURL: localenvtest.AMQPURL(t),
			CheckInterval: checkInterval, LogLevel: "warn",
			Env: append([]string{"DATABASE_URL=" + databaseURL, "SHUTDOWN_TIMEOUT=5s"}, extraEnv...),
		}
	}
	// users first: it and products migrate different databases, but two
	// products instances starting together take turns on the lock.
	var services []*instance
	for _, want := range []struct {
		service string
		cfg     stack.InstanceConfig
	}{
		{"users", configOf(stack.UsersCommand, "users-1", usersDB, "JWT_KEYS_DIR="+st.Path("keys"))},
		{"products", configOf(stack.ProductsCommand, "products-1", productsDB)},
		{"products", configOf(stack.ProductsCommand, "products-2", productsDB)},
	} {
		svc, err := st.StartInstance(ctx, want.cfg)
		if err != nil {
			t.Fatal(err)
		}
		services = append(services, &instance{id: svc.ID(), service: want.service, port: svc.Port(), svc: svc})
	}
	e.users, e.products = services[0], services[1:]
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
	for _, inst := range services {
		wg.Go(func() {
			sc, err := st.StartSidecar(ctx, inst.svc)
			inst.sidecar = sc
			errs <- err
		})
	}
	for _, inst := range []*instance{e.echo, e.tcpEcho} {
		wg.Go(func() {
			sc, err := st.StartProxy(ctx, localenv.SidecarOptions{Consul: e.consul, SidecarFor: inst.id})
			inst.sidecar = sc
			errs <- err
		})
	}
	for _, c := range []*client{e.ingress, e.edge, e.probe} {
		wg.Go(func() {
			sc, err := st.StartProxy(ctx, localenv.SidecarOptions{Consul: e.consul, SidecarFor: c.id})
			c.sidecar = sc
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

// ownDatabase creates a database of its own for this run in the
// shared PostgreSQL, dropped when the stack stops.
func ownDatabase(ctx context.Context, t *testing.T, prefix string) string {
	t.Helper()
	adminURL := localenvtest.PostgresURL(t)
	raw := make([]byte, 4)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	name := "mesh_" + prefix + "_" + hex.EncodeToString(raw)
	url, err := stack.CreateDatabase(ctx, adminURL, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := stack.DropDatabase(ctx, adminURL, name); err != nil {
			t.Error(err)
		}
	})
	return url
}

// startProcess starts inst's process again and waits until it is ready
// and has registered itself.
func (e *meshEnv) startProcess(ctx context.Context, t *testing.T, inst *instance) {
	t.Helper()
	if err := inst.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
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
	if err := stack.WaitPassing(ctx, e.api, service, n); err != nil {
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
