package system_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// checkInterval paces the Consul checks of every instance and sidecar:
// short, so that instances join the catalog quickly.
const checkInterval = 500 * time.Millisecond

// instance is one service process with its sidecar.
type instance struct {
	id      string // SERVICE_ID, also the process and log name
	service string // Consul service name and binary
	port    int    // its own HTTP port, loopback only
	env     []string
	// readyBody, when set, must appear in the /readyz body (the edge is
	// ready without Redis or the broker; the tests need both).
	readyBody string
}

func (i instance) url() string { return "http://" + loopback(i.port) }

// startServices starts users, two products instances and the edge, then
// their sidecars, and returns once Consul lists every sidecar passing and
// the edge reaches both services through its own sidecar.
func (s *system) startServices(ctx context.Context) error {
	keys := s.path("keys")
	for _, dir := range []string{keys, s.path("logs")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	edgeUsers, edgeProducts := ports[4], ports[5]
	instances := []instance{
		{id: "users-1", service: "users", port: ports[0], env: []string{
			"DATABASE_URL=" + s.postgres.URL("users"),
			"JWT_KEYS_DIR=" + keys,
			"BOOTSTRAP_ADMIN_EMAIL=" + s.adminEmail,
			"BOOTSTRAP_ADMIN_PASSWORD=" + s.adminPassword,
		}},
		{id: "products-1", service: "products", port: ports[1], env: []string{
			"DATABASE_URL=" + s.postgres.URL("products"), "PRODUCTS_CACHE_MAX_AGE=60s",
		}},
		{id: "products-2", service: "products", port: ports[2], env: []string{
			"DATABASE_URL=" + s.postgres.URL("products"), "PRODUCTS_CACHE_MAX_AGE=60s",
		}},
		{id: "edge-1", service: "edge", port: ports[3], readyBody: `"status":"ready"`, env: []string{
			// Loopback addresses: the edge's registration asks its
			// sidecar for these upstream listeners.
			fmt.Sprintf("EDGE_UPSTREAMS=users=%s,products=%s", loopback(edgeUsers), loopback(edgeProducts)),
			"REDIS_URL=redis://" + s.redis.Addr() + "/0",
			"EDGE_REDIS_RETRY_AFTER=500ms",
			"EDGE_SWAGGER_UI_DIR=" + filepath.Join(s.root, apidocs.DefaultAssetsDir),
		}},
	}
	s.edgeURL = instances[3].url()
	for _, inst := range instances {
		if err := s.startInstance(ctx, inst); err != nil {
			return err
		}
	}
	// Sidecars start together: each mostly waits for its first xDS round.
	var wg sync.WaitGroup
	errs := make([]error, len(instances))
	for i, inst := range instances {
		wg.Go(func() { errs[i] = s.startSidecar(ctx, inst.id) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for service, n := range map[string]int{"users": 1, "products": 2, "edge": 1} {
		if err := s.waitPassing(ctx, service, n); err != nil {
			return err
		}
	}
	// Passing in Consul does not mean the edge's sidecar has the
	// endpoints yet: wait until both upstream listeners answer.
	for _, port := range []int{edgeUsers, edgeProducts} {
		url := "http://" + loopback(port) + "/readyz"
		if err := localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error { return expectOK(ctx, url, "") }); err != nil {
			return fmt.Errorf("edge upstream %s: %w", url, err)
		}
	}
	return nil
}

// startInstance starts one service process and waits until it is ready
// and registered with its sidecar.
func (s *system) startInstance(ctx context.Context, inst instance) error {
	sidecarPort, err := localenv.FreePort()
	if err != nil {
		return err
	}
	env := append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.dir,
		"HTTP_ADDR=" + loopback(inst.port),
		"AMQP_URL=" + s.rabbitMQ.URL(),
		"LOG_LEVEL=info",
		"CONSUL_HTTP_ADDR=" + s.consul.HTTPAddr(),
		"SERVICE_ID=" + inst.id,
		"SIDECAR_PORT=" + strconv.Itoa(sidecarPort),
		"CONSUL_CHECK_INTERVAL=" + checkInterval.String(),
		// Stops are quick: nothing calls a stopping test system.
		"CONSUL_DRAIN_DELAY=200ms",
		"SHUTDOWN_TIMEOUT=5s",
	}, inst.env...)
	p, err := localenv.StartProcess(localenv.Command{
		Name: inst.id, Path: s.path("bin", inst.service), Env: env, Dir: s.dir,
		LogPath: s.path("logs", inst.id+".log"),
	})
	if err != nil {
		return err
	}
	s.started(p.Pid())
	s.onStop(inst.id, p.Stop)
	err = localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		select {
		case <-p.Done():
			return localenv.StopPolling(fmt.Errorf("%s exited: %w", inst.id, p.Err()))
		default:
		}
		if err := expectOK(ctx, inst.url()+"/readyz", inst.readyBody); err != nil {
			return err
		}
		_, _, err := s.consulAPI.Agent().Service(inst.id+"-sidecar-proxy", (&api.QueryOptions{}).WithContext(ctx))
		return err
	})
	if err != nil {
		return fmt.Errorf("start %s: %w\n--- %s ---\n%s", inst.id, err, p.LogPath(), p.LogTail(30))
	}
	return nil
}

func (s *system) startSidecar(ctx context.Context, id string) error {
	sc, err := localenv.StartSidecar(ctx, localenv.SidecarOptions{Consul: s.consul, SidecarFor: id, Dir: s.path("sidecars")})
	if err != nil {
		return err
	}
	s.started(sc.Pid())
	s.onStop("sidecar of "+id, sc.Stop)
	return nil
}

// waitPassing waits until Consul lists n passing sidecars of service,
// the endpoints its callers route to.
func (s *system) waitPassing(ctx context.Context, service string, n int) error {
	return localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		got, _, err := s.consulAPI.Health().Connect(service, "", true, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		if len(got) != n {
			return fmt.Errorf("%d of %d %s endpoints passing", len(got), n, service)
		}
		return nil
	})
}

// expectOK GETs url and wants 200 with want in the body.
func expectOK(ctx context.Context, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
		return fmt.Errorf("GET %s: %d %.200s", url, resp.StatusCode, b)
	}
	return nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := localenv.FreePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}
