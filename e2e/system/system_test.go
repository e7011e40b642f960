package system_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
)

// checkInterval paces the Consul checks of every instance and sidecar:
// short, so that instances join the catalog quickly.
const checkInterval = 500 * time.Millisecond

// system is everything the package started (owned by stack), and what
// the tests read of it.
type system struct {
	stack     *stack.Stack
	redis     *localenv.Redis
	consulAPI *api.Client
	// amqpURL is the broker the services publish their events to.
	amqpURL string
	// users is the users instance (a test stops and restarts it).
	users *stack.Instance
	// jaeger is the trace backend every process sends its spans to;
	// ingress is the ingress Envoy, whose log holds the access log.
	jaeger  *localenv.Jaeger
	ingress *localenv.Envoy

	// ingressURL is where clients call the system.
	ingressURL string
	// edgeURL is the edge's own loopback listener, read only for its
	// metrics (clients never call it).
	edgeURL string
	// adminEmail and adminPassword are the bootstrap admin's credentials.
	adminEmail, adminPassword string
	// admin, alice and bob are logged in once for the whole run: the
	// ingress allows only 10 logins a minute per client address.
	admin, alice, bob account
	// scrapeTargets are the metrics endpoints of every process started,
	// labelled as observability/prometheus/prometheus.yml labels them.
	scrapeTargets []localenv.ScrapeTarget
}

// startSystem starts the whole system on st and returns once a client can
// log in through the ingress; stacktest.Run stops st, whatever happened.
func startSystem(ctx context.Context, st *stack.Stack) (*system, error) {
	root := st.Root()
	s := &system{stack: st, adminEmail: "admin@portico.test", adminPassword: "admin-" + randomHex(12)}

	var servers *stack.Servers
	steps := []struct {
		name  string
		start func(context.Context) error
	}{
		{"servers and binaries", func(ctx context.Context) (err error) {
			servers, err = st.StartServers(ctx, stack.ServersConfig{
				Databases: []string{"users", "products"},
				// Traced as `make up` is: Jaeger, and every process and
				// Envoy sending to it (the default document samples all).
				Tracing: true,
				Build: func(ctx context.Context) error {
					return stack.Build(ctx, root, st.Path("bin"), stack.UsersCommand, stack.ProductsCommand, stack.EdgeCommand)
				},
			})
			if err == nil {
				s.redis, s.consulAPI, s.amqpURL = servers.Redis, servers.ConsulAPI, servers.RabbitMQ.URL()
				s.jaeger = servers.Jaeger
			}
			return err
		}},
		{"services", func(ctx context.Context) error { return s.startServices(ctx, servers) }},
		{"ingress", func(ctx context.Context) error { return s.startIngress(ctx, servers) }},
		{"client accounts", s.createAccounts},
	}
	for _, step := range steps {
		begin := time.Now()
		if err := step.start(ctx); err != nil {
			return s, fmt.Errorf("%s: %w", step.name, err)
		}
		fmt.Fprintf(os.Stderr, "e2e/system: %s ready in %v\n", step.name, time.Since(begin).Round(time.Millisecond))
	}
	return s, nil
}

// startServices starts users, two products instances and the edge, each
// with its sidecar, and returns once the edge reaches both services
// through its own sidecar.
func (s *system) startServices(ctx context.Context, sv *stack.Servers) error {
	keys := s.stack.Path("keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return err
	}
	instance := func(id, command string, env ...string) stack.InstanceConfig {
		return stack.InstanceConfig{
			ID: id, Binary: stack.Binary(s.stack.Path("bin"), command), Consul: sv.Consul, AMQPURL: sv.RabbitMQ.URL(),
			CheckInterval: checkInterval,
			// Stops are quick: nothing calls a stopping test system.
			Env: append([]string{"CONSUL_DRAIN_DELAY=200ms", "SHUTDOWN_TIMEOUT=5s"}, env...),
		}
	}
	products := []string{"DATABASE_URL=" + sv.DatabaseURL("products"), "PRODUCTS_CACHE_MAX_AGE=60s"}
	started, err := s.stack.StartInstances(ctx,
		instance("users-1", stack.UsersCommand,
			"DATABASE_URL="+sv.DatabaseURL("users"),
			"JWT_KEYS_DIR="+keys,
			"BOOTSTRAP_ADMIN_EMAIL="+s.adminEmail,
			"BOOTSTRAP_ADMIN_PASSWORD="+s.adminPassword,
		),
		instance("products-1", stack.ProductsCommand, products...),
		instance("products-2", stack.ProductsCommand, products...),
	)
	if err != nil {
		return err
	}
	s.users = started[0]
	for _, inst := range started {
		s.scrapeTargets = append(s.scrapeTargets, inst.ScrapeTargets(strings.TrimRight(inst.ID(), "-0123456789"))...)
	}
	edgeInstance := instance("edge-1", stack.EdgeCommand,
		"EDGE_REDIS_RETRY_AFTER=500ms",
		"EDGE_SWAGGER_UI_DIR="+filepath.Join(s.stack.Root(), apidocs.DefaultAssetsDir),
	)
	// The edge is ready without Redis or the broker; the tests need both.
	edgeInstance.ReadyBody = `"status":"ready"`
	edge, err := s.stack.StartEdge(ctx, stack.EdgeConfig{Instance: edgeInstance, RedisAddr: sv.Redis.Addr()})
	if err != nil {
		return err
	}
	s.edgeURL = edge.URL()
	s.scrapeTargets = append(s.scrapeTargets, edge.ScrapeTargets("edge")...)
	return nil
}

// startIngress runs the control plane in-process, the rate-limit service
// it configures, and one ingress Envoy, and returns once the ingress
// routes to every service. It comes after the services so that the
// ingress's first JWKS fetch through the mesh finds users.
func (s *system) startIngress(ctx context.Context, sv *stack.Servers) error {
	cp, err := s.stack.RunControlPlane(ctx, stack.ControlPlaneConfig{Consul: sv.Consul, LogLevel: slog.LevelInfo})
	if err != nil {
		return err
	}
	rl, err := s.stack.StartRateLimit(ctx, localenv.RateLimitOptions{
		RedisAddr: sv.Redis.Addr(), XDSAddr: cp.XDSAddr(), GRPCPort: cp.RateLimitPort(),
	})
	if err != nil {
		return err
	}
	ingress, err := s.stack.StartIngress(ctx, stack.IngressConfig{XDSAddr: cp.XDSAddr(), LogLevel: "info"})
	if err != nil {
		return err
	}
	s.ingress = ingress
	ingressTarget, err := stack.IngressScrapeTarget(ingress)
	if err != nil {
		return err
	}
	s.scrapeTargets = append(s.scrapeTargets, cp.ScrapeTarget(), stack.RateLimitScrapeTarget(rl), ingressTarget)
	s.ingressURL = cp.IngressURL()

	// Public routes first (they do not count against the login limit):
	// the JWKS proves ingress -> users, the merged document proves
	// ingress -> edge and the edge's view of both services.
	if err := stack.WaitOK(ctx, s.ingressURL+"/api/users/.well-known/jwks.json", `"keys"`); err != nil {
		return fmt.Errorf("ingress -> users: %w", err)
	}
	return localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		doc, err := s.fetch(ctx, "/openapi.json")
		if err != nil {
			return err
		}
		for _, path := range []string{`"/api/users/login"`, `"/api/products/products"`} {
			if !strings.Contains(string(doc), path) {
				return fmt.Errorf("merged document lacks %s", path)
			}
		}
		return nil
	})
}

// fetch GETs a path of the ingress and returns the body of a 200.
func (s *system) fetch(ctx context.Context, path string) ([]byte, error) {
	r, err := s.send(ctx, request{method: http.MethodGet, path: path})
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %.200s", path, r.status, r.body)
	}
	return r.body, nil
}

// randomHex returns n random bytes as hex, for unique names and secrets.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
