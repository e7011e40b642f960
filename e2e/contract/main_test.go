package contract_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
	"github.com/portico-mesh/portico/mesh/localenv/stack/stacktest"
)

// sys is the system the run calls through its ingress.
var sys *system

// startTimeout bounds the start, builds included.
const startTimeout = 4 * time.Minute

// system is what the suite started (owned by stack) and what the test
// reads of it.
type system struct {
	stack      *stack.Stack
	ingressURL string
	// adminEmail and adminPassword are the bootstrap admin's credentials.
	adminEmail, adminPassword string
}

func TestMain(m *testing.M) {
	os.Exit(stacktest.Run(m, "e2e/contract", startTimeout, func(ctx context.Context, st *stack.Stack) (err error) {
		sys, err = startSystem(ctx, st)
		return err
	}))
}

// startSystem starts servers, one users and one products instance, the
// edge, the control plane (in process), the rate-limit service and the
// ingress, with the edge configuration of contractEdgeConfig. It returns
// once the merged document lists both services.
func startSystem(ctx context.Context, st *stack.Stack) (*system, error) {
	root := st.Root()
	s := &system{stack: st, adminEmail: "admin@portico.test", adminPassword: "admin-" + randomHex(12)}

	begin := time.Now()
	sv, err := st.StartServers(ctx, stack.ServersConfig{
		Databases: []string{"users", "products"},
		Build: func(ctx context.Context) error {
			return stack.Build(ctx, root, st.Path("bin"), stack.UsersCommand, stack.ProductsCommand, stack.EdgeCommand)
		},
	})
	if err != nil {
		return s, fmt.Errorf("servers: %w", err)
	}
	keys := st.Path("keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return s, err
	}
	instance := func(id, command string, env ...string) stack.InstanceConfig {
		return stack.InstanceConfig{
			ID: id, Binary: stack.Binary(st.Path("bin"), command), Consul: sv.Consul, AMQPURL: sv.RabbitMQ.URL(),
			CheckInterval: 500 * time.Millisecond,
			Env:           append([]string{"CONSUL_DRAIN_DELAY=200ms", "SHUTDOWN_TIMEOUT=5s"}, env...),
		}
	}
	if _, err := st.StartInstances(ctx,
		instance("users-1", stack.UsersCommand,
			"DATABASE_URL="+sv.DatabaseURL("users"),
			"JWT_KEYS_DIR="+keys,
			"BOOTSTRAP_ADMIN_EMAIL="+s.adminEmail,
			"BOOTSTRAP_ADMIN_PASSWORD="+s.adminPassword,
		),
		instance("products-1", stack.ProductsCommand, "DATABASE_URL="+sv.DatabaseURL("products")),
	); err != nil {
		return s, fmt.Errorf("services: %w", err)
	}
	edge := instance("edge-1", stack.EdgeCommand,
		"EDGE_SWAGGER_UI_DIR="+filepath.Join(root, apidocs.DefaultAssetsDir))
	edge.ReadyBody = `"status":"ready"`
	if _, err := st.StartEdge(ctx, stack.EdgeConfig{Instance: edge, RedisAddr: sv.Redis.Addr()}); err != nil {
		return s, fmt.Errorf("edge: %w", err)
	}

	// The control plane reads the edge configuration from KV when it
	// starts, as an operator would have written it.
	if err := putEdgeConfig(ctx, sv.ConsulAPI); err != nil {
		return s, err
	}
	cp, err := st.RunControlPlane(ctx, stack.ControlPlaneConfig{Consul: sv.Consul, LogLevel: slog.LevelInfo})
	if err != nil {
		return s, err
	}
	if _, err := st.StartRateLimit(ctx, localenv.RateLimitOptions{
		RedisAddr: sv.Redis.Addr(), XDSAddr: cp.XDSAddr(), GRPCPort: cp.RateLimitPort(),
	}); err != nil {
		return s, err
	}
	if _, err := st.StartIngress(ctx, stack.IngressConfig{XDSAddr: cp.XDSAddr(), LogLevel: "info"}); err != nil {
		return s, err
	}
	s.ingressURL = cp.IngressURL()
	if err := stack.WaitOK(ctx, s.ingressURL+"/api/users/.well-known/jwks.json", `"keys"`); err != nil {
		return s, fmt.Errorf("ingress -> users: %w", err)
	}
	err = localenv.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		doc, err := get(ctx, s.ingressURL+"/openapi.json")
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
	if err != nil {
		return s, err
	}
	fmt.Fprintf(os.Stderr, "e2e/contract: system ready in %v\n", time.Since(begin).Round(time.Millisecond))
	return s, nil
}

// contractEdgeConfig is the built-in edge configuration with rate limits
// raised far above what the run sends, so that its thousands of requests
// (logins included) meet the services rather than the ingress's 429. The
// document still declares 429 on every operation.
func contractEdgeConfig() (edgeconfig.Document, error) {
	doc, err := edgeconfig.Parse(edgeconfig.Default())
	if err != nil {
		return doc, err
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
	return doc, nil
}

func putEdgeConfig(ctx context.Context, consul *api.Client) error {
	doc, err := contractEdgeConfig()
	if err != nil {
		return err
	}
	raw, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	if err := doc.Validate(); err != nil {
		return fmt.Errorf("contract edge configuration: %w", err)
	}
	_, err = consul.KV().Put(&api.KVPair{Key: stack.ConfigKey, Value: raw}, (&api.WriteOptions{}).WithContext(ctx))
	return err
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
