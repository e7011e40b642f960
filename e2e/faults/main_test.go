package faults_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
	"github.com/portico-mesh/portico/mesh/localenv/stack/stacktest"
)

// sys is the running system every case shares. Cases run one after
// another and leave it as they found it (every server restarted, every
// instance back).
var sys *system

const (
	startTimeout = 4 * time.Minute
	// checkInterval paces the Consul checks of every instance and
	// sidecar: short, so that a killed instance leaves the catalog soon.
	checkInterval = 500 * time.Millisecond
)

// system is what the suite started (owned by stack) and what the cases
// read of it.
type system struct {
	stack   *stack.Stack
	servers *stack.Servers
	// products are the two products instances the ingress balances.
	products []*stack.Instance
	// controlPlane runs as its command (Process), so it can be stopped.
	controlPlane *stack.ControlPlane
	ingress      *localenv.Envoy
	ingressURL   string
	// goodConfig is the edge configuration the suite wrote to KV.
	goodConfig []byte
	// alice is a registered user whose token the load uses.
	alice account
}

// account is a user with a token from the ingress's login.
type account struct {
	Email, Password, Token string
}

func TestMain(m *testing.M) {
	os.Exit(stacktest.Run(matrixReport{m}, "e2e/faults", startTimeout, func(ctx context.Context, st *stack.Stack) (err error) {
		sys, err = startSystem(ctx, st)
		return err
	}))
}

// matrixReport runs the tests, then prints the fault matrix and writes it
// where make test reads it: go test shows a passing package's output only
// with -v.
type matrixReport struct{ m *testing.M }

func (r matrixReport) Run() int {
	code := r.m.Run()
	printMatrix(os.Stdout)
	if path := os.Getenv(matrixFileEnv); path != "" {
		if err := writeMatrix(path); err != nil {
			fmt.Fprintln(os.Stderr, "e2e/faults:", err)
			code = 1
		}
	}
	return code
}

// startSystem starts the servers, users, two products instances, the
// edge, the control plane command, the rate-limit service and the
// ingress, with limits raised above the load (faultsEdgeConfig), and
// returns once a registered user's authenticated read passes.
func startSystem(ctx context.Context, st *stack.Stack) (*system, error) {
	root := st.Root()
	s := &system{stack: st}
	begin := time.Now()
	bin := st.Path("bin")
	sv, err := st.StartServers(ctx, stack.ServersConfig{
		Databases: []string{"users", "products"},
		// The Consul case restarts the agent, as the issue asks, and
		// expects the cluster back: a -dev agent would come back empty.
		PersistentConsul: true,
		Build: func(ctx context.Context) error {
			return stack.Build(ctx, root, bin, stack.UsersCommand, stack.ProductsCommand, stack.EdgeCommand, stack.ControlPlaneCommand)
		},
	})
	if err != nil {
		return s, fmt.Errorf("servers: %w", err)
	}
	s.servers = sv
	keys := st.Path("keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return s, err
	}
	instance := func(id, command string, env ...string) stack.InstanceConfig {
		return stack.InstanceConfig{
			ID: id, Binary: stack.Binary(bin, command), Consul: sv.Consul, AMQPURL: sv.RabbitMQ.URL(),
			CheckInterval: checkInterval,
			Env:           append([]string{"CONSUL_DRAIN_DELAY=200ms", "SHUTDOWN_TIMEOUT=5s"}, env...),
		}
	}
	products := []string{"DATABASE_URL=" + sv.DatabaseURL("products")}
	started, err := st.StartInstances(ctx,
		instance("users-1", stack.UsersCommand,
			"DATABASE_URL="+sv.DatabaseURL("users"),
			"JWT_KEYS_DIR="+keys,
			"BOOTSTRAP_ADMIN_EMAIL=admin@portico.test",
			"BOOTSTRAP_ADMIN_PASSWORD=admin-"+randomHex(12),
		),
		instance("products-1", stack.ProductsCommand, products...),
		instance("products-2", stack.ProductsCommand, products...),
	)
	if err != nil {
		return s, fmt.Errorf("services: %w", err)
	}
	s.products = started[1:]
	edge := instance("edge-1", stack.EdgeCommand, "EDGE_REDIS_RETRY_AFTER=500ms")
	edge.ReadyBody = `"status":"ready"`
	if _, err := st.StartEdge(ctx, stack.EdgeConfig{Instance: edge, RedisAddr: sv.Redis.Addr()}); err != nil {
		return s, fmt.Errorf("edge: %w", err)
	}
	if s.goodConfig, err = faultsEdgeConfig(); err != nil {
		return s, err
	}
	if _, err := sv.ConsulAPI.KV().Put(&api.KVPair{Key: stack.ConfigKey, Value: s.goodConfig}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return s, err
	}
	cp, err := st.StartControlPlane(ctx, stack.ControlPlaneConfig{Consul: sv.Consul}, stack.Binary(bin, stack.ControlPlaneCommand))
	if err != nil {
		return s, err
	}
	s.controlPlane = cp
	if _, err := st.StartRateLimit(ctx, localenv.RateLimitOptions{
		RedisAddr: sv.Redis.Addr(), XDSAddr: cp.XDSAddr(), GRPCPort: cp.RateLimitPort(),
	}); err != nil {
		return s, err
	}
	if s.ingress, err = st.StartIngress(ctx, stack.IngressConfig{XDSAddr: cp.XDSAddr()}); err != nil {
		return s, err
	}
	s.ingressURL = cp.IngressURL()
	// send, which the account's start uses, calls sys's ingress.
	sys = s
	if err := stack.WaitOK(ctx, s.ingressURL+"/api/users/.well-known/jwks.json", `"keys"`); err != nil {
		return s, fmt.Errorf("ingress -> users: %w", err)
	}
	if err := s.createAccount(ctx); err != nil {
		return s, err
	}
	fmt.Fprintf(os.Stderr, "e2e/faults: system ready in %v\n", time.Since(begin).Round(time.Millisecond))
	return s, nil
}

// faultsEdgeConfig is the built-in edge configuration with rate limits
// raised far above the load, so that the cases count faults, not 429s.
// The limits still run (the Redis case sees them fail open).
func faultsEdgeConfig() ([]byte, error) {
	doc, err := edgeconfig.Parse(edgeconfig.Default())
	if err != nil {
		return nil, err
	}
	generous := &edgeconfig.RateLimit{
		Local: &edgeconfig.TokenBucket{Requests: 10000, Per: edgeconfig.Duration(time.Second), Burst: 20000},
		Global: &edgeconfig.GlobalLimits{
			PerClient:  &edgeconfig.Limit{Requests: 1000000, Per: "minute"},
			PerSubject: &edgeconfig.Limit{Requests: 1000000, Per: "minute"},
		},
	}
	doc.Defaults.RateLimit = generous
	for i := range doc.Routes {
		if doc.Routes[i].RateLimit != nil {
			doc.Routes[i].RateLimit = generous
		}
	}
	if err := doc.Validate(); err != nil {
		return nil, fmt.Errorf("faults edge configuration: %w", err)
	}
	return yaml.Marshal(doc)
}

// createAccount registers alice and logs her in; the login retries until
// the ingress has the users service's keys and an authenticated read of
// products passes.
func (s *system) createAccount(ctx context.Context) error {
	suffix := randomHex(4)
	s.alice = account{Email: "alice-" + suffix + "@example.com", Password: "password-" + randomHex(8)}
	body, _ := json.Marshal(map[string]string{"username": "alice-" + suffix, "email": s.alice.Email, "password": s.alice.Password})
	r, err := send(ctx, request{method: http.MethodPost, path: "/api/users/users", body: string(body)})
	if err != nil {
		return err
	}
	if r.status != http.StatusCreated {
		return fmt.Errorf("register: %s", r)
	}
	login, _ := json.Marshal(map[string]string{"email": s.alice.Email, "password": s.alice.Password})
	return localenv.Poll(ctx, time.Second, func(ctx context.Context) error {
		r, err := send(ctx, request{method: http.MethodPost, path: "/api/users/login", body: string(login)})
		if err != nil {
			return err
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &tok) != nil || tok.AccessToken == "" {
			return fmt.Errorf("login: %s", r)
		}
		s.alice.Token = tok.AccessToken
		r, err = send(ctx, request{method: http.MethodGet, path: "/api/products/products?limit=1", token: tok.AccessToken})
		if err != nil {
			return err
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("authenticated read: %s", r)
		}
		return nil
	})
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
