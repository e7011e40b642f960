// Package ingress_test checks the Envoy ingress end to end: a real Consul
// agent, sidecars, the control plane, the rate-limit service with Redis,
// and ingress Envoys, all on loopback. Upstream services are small HTTP
// servers that record what reaches them, registered in the mesh like any
// Portico service.
package ingress_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/stack"
	"github.com/portico-mesh/portico/services/users/token"
)

// testEnv is the system every test in the package shares. Tests run one
// after another and leave it as they found it.
type testEnv struct {
	// stack owns everything TestMain started.
	stack     *stack.Stack
	consul    *localenv.Consul
	consulAPI *api.Client
	redis     *localenv.Redis
	cp        *controlplane.ControlPlane
	rateLimit *localenv.RateLimit
	ingress   *localenv.Envoy
	// ingressURL is the first ingress Envoy's client listener.
	ingressURL    string
	rateLimitPort int
	issuer        *token.Issuer
	signingKey    ed25519.PrivateKey
	users         *upstream
	instances     atomic.Int64
}

var (
	env testEnv
	// testJWKS is what the "users" upstream publishes; a rotation test
	// replaces it.
	testJWKS atomic.Pointer[[]byte]
)

const (
	testIssuer   = "portico-users"
	testAudience = "portico"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	dir, err := os.MkdirTemp("", "portico-ingress-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/ingress: start:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	st, err := stack.New(stack.Config{Root: filepath.Join("..", ".."), Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/ingress: start:", err)
		return 1
	}
	env.stack = st
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := st.Stop(stopCtx); err != nil {
			fmt.Fprintln(os.Stderr, "e2e/ingress: stop:", err)
			code = 1
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := startEnv(ctx, st); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/ingress: start:", err)
		return 1
	}
	return m.Run()
}

// startEnv starts Consul (without mesh/entries: this package writes its
// own), Redis, the "users" upstream, the control plane, the rate-limit
// service and the ingress on st, which stops whatever started.
func startEnv(ctx context.Context, st *stack.Stack) (err error) {
	if env.consul, err = st.StartConsul(ctx, localenv.ConsulOptions{}); err != nil {
		return err
	}
	if env.consulAPI, err = env.consul.Client(); err != nil {
		return err
	}
	// Portico's services speak HTTP, so intentions can be L7 and a denied
	// request gets a 403 rather than a closed connection.
	for _, name := range []string{"users", "products", "ingress"} {
		entry := &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: name, Protocol: "http"}
		if _, _, err := env.consulAPI.ConfigEntries().Set(entry, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("service-defaults %s: %w", name, err)
		}
	}
	base, err := yaml.Marshal(baseDocument())
	if err != nil {
		return err
	}
	if _, err := writeConfig(ctx, base); err != nil {
		return err
	}
	if env.redis, err = st.StartRedis(ctx, localenv.RedisOptions{}); err != nil {
		return err
	}

	// Tokens are signed by a key of the test's; the "users" upstream
	// publishes its JWKS where the ingress fetches keys.
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	keys, err := token.NewKeyring(priv)
	if err != nil {
		return err
	}
	jwks := keys.JWKS()
	testJWKS.Store(&jwks)
	env.signingKey = priv
	if env.issuer, err = token.NewIssuer(keys, token.Config{Issuer: testIssuer, Audience: testAudience, TTL: time.Hour}); err != nil {
		return err
	}
	if env.users, err = newUpstream(ctx, "users", "users-1"); err != nil {
		return err
	}
	st.OnStop("users upstream", env.users.Close)

	cp, err := st.RunControlPlane(ctx, controlPlaneConfig("controlplane-1", 0))
	if err != nil {
		return err
	}
	env.cp, env.rateLimitPort, env.ingressURL = cp.InProcess, cp.RateLimitPort(), cp.IngressURL()
	if env.rateLimit, err = st.StartRateLimit(ctx, localenv.RateLimitOptions{
		RedisAddr: env.redis.Addr(), XDSAddr: cp.XDSAddr(), GRPCPort: env.rateLimitPort,
	}); err != nil {
		return err
	}
	env.ingress, err = st.StartIngress(ctx, ingressConfig("ingress-1", cp))
	return err
}

// controlPlaneConfig is a control plane of this package, logging at debug
// level to <name>.log and pointing its ingress at the shared rate-limit
// service (rateLimitPort; 0 before it started).
func controlPlaneConfig(name string, rateLimitPort int) stack.ControlPlaneConfig {
	return stack.ControlPlaneConfig{
		Consul: env.consul, RateLimitPort: rateLimitPort,
		LogPath: env.stack.Path(name + ".log"), LogLevel: slog.LevelDebug,
	}
}

// ingressConfig is an ingress Envoy fed by cp, with its outlier log.
func ingressConfig(nodeID string, cp *stack.ControlPlane) stack.IngressConfig {
	return stack.IngressConfig{
		NodeID: nodeID, XDSAddr: cp.XDSAddr(), Dir: env.stack.Path("ingress"), LogLevel: "info",
		OutlierLog: env.stack.Path("ingress", nodeID+"-outlier.log"),
	}
}
