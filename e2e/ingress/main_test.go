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
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/envoy"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/services/users/token"
)

// testEnv is the system every test in the package shares. Tests run one
// after another and leave it as they found it.
type testEnv struct {
	dir       string
	consul    *localenv.Consul
	consulAPI *api.Client
	redis     *localenv.Redis
	cp        *controlplane.ControlPlane
	rateLimit *localenv.RateLimit
	ingress   *localenv.Envoy
	// ingressURL is the first ingress Envoy's client listener.
	ingressURL    string
	ingressPort   int
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, err := startEnv(ctx)
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		stop(stopCtx)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/ingress: start:", err)
		return 1
	}
	return m.Run()
}

// startEnv starts everything; the returned stop undoes whatever started,
// even after a failure.
func startEnv(ctx context.Context) (stop func(context.Context), err error) {
	var stops []func(context.Context)
	stop = func(ctx context.Context) {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i](ctx)
		}
	}
	dir, err := os.MkdirTemp("", "portico-ingress-")
	if err != nil {
		return stop, err
	}
	env.dir = dir
	stops = append(stops, func(context.Context) { _ = os.RemoveAll(dir) })

	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if env.consul, err = localenv.StartConsul(startCtx, localenv.ConsulOptions{Dir: filepath.Join(dir, "consul")}); err != nil {
		return stop, err
	}
	stops = append(stops, func(ctx context.Context) { _ = env.consul.Stop(ctx) })
	if env.consulAPI, err = env.consul.Client(); err != nil {
		return stop, err
	}
	// Portico's services speak HTTP, so intentions can be L7 and a denied
	// request gets a 403 rather than a closed connection.
	for _, name := range []string{"users", "products", "ingress"} {
		entry := &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: name, Protocol: "http"}
		if _, _, err := env.consulAPI.ConfigEntries().Set(entry, (&api.WriteOptions{}).WithContext(startCtx)); err != nil {
			return stop, fmt.Errorf("service-defaults %s: %w", name, err)
		}
	}
	base, err := yaml.Marshal(baseDocument())
	if err != nil {
		return stop, err
	}
	if _, err := writeConfig(startCtx, base); err != nil {
		return stop, err
	}
	if env.redis, err = localenv.StartRedis(startCtx, localenv.RedisOptions{Dir: filepath.Join(dir, "redis")}); err != nil {
		return stop, err
	}
	stops = append(stops, func(ctx context.Context) { _ = env.redis.Stop(ctx) })

	// Tokens are signed by a key of the test's; the "users" upstream
	// publishes its JWKS where the ingress fetches keys.
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return stop, err
	}
	keys, err := token.NewKeyring(priv)
	if err != nil {
		return stop, err
	}
	jwks := keys.JWKS()
	testJWKS.Store(&jwks)
	env.signingKey = priv
	if env.issuer, err = token.NewIssuer(keys, token.Config{Issuer: testIssuer, Audience: testAudience, TTL: time.Hour}); err != nil {
		return stop, err
	}
	if env.users, err = newUpstream(startCtx, "users", "users-1"); err != nil {
		return stop, err
	}
	stops = append(stops, func(ctx context.Context) { _ = env.users.Close(ctx) })

	rateLimitPort, err := localenv.FreePort()
	if err != nil {
		return stop, err
	}
	env.rateLimitPort = rateLimitPort
	cp, ingressPort, stopCP, err := startControlPlane(ctx, "controlplane-1")
	if err != nil {
		return stop, err
	}
	stops = append(stops, stopCP)
	env.cp, env.ingressPort = cp, ingressPort
	env.ingressURL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ingressPort))

	if env.rateLimit, err = localenv.StartRateLimit(startCtx, localenv.RateLimitOptions{
		Dir: filepath.Join(dir, "ratelimit"), RedisAddr: env.redis.Addr(), XDSAddr: env.cp.XDSAddr(), GRPCPort: rateLimitPort,
	}); err != nil {
		return stop, err
	}
	stops = append(stops, func(ctx context.Context) { _ = env.rateLimit.Stop(ctx) })

	if env.ingress, err = startIngress(startCtx, env.cp, "ingress-1"); err != nil {
		return stop, err
	}
	stops = append(stops, func(ctx context.Context) { _ = env.ingress.Stop(ctx) })
	return stop, nil
}

// startControlPlane runs a control plane in-process, programming an
// ingress listener on a free port; stop ends it.
func startControlPlane(ctx context.Context, name string) (*controlplane.ControlPlane, int, func(context.Context), error) {
	noop := func(context.Context) {}
	ingressPort, err := localenv.FreePort()
	if err != nil {
		return nil, 0, noop, err
	}
	log := slog.New(slog.NewJSONHandler(mustCreate(filepath.Join(env.dir, name+".log")), &slog.HandlerOptions{Level: slog.LevelDebug}))
	cp, err := controlplane.New(ctx, controlplane.Config{
		ConsulHTTPAddr:  env.consul.HTTPAddr(),
		XDSAddr:         "127.0.0.1:0",
		AdminAddr:       "127.0.0.1:0",
		Listener:        ir.Listener{Address: "127.0.0.1", Port: uint32(ingressPort)},
		IngressService:  "ingress",
		ConfigKey:       configKey,
		StatusKey:       statusKey,
		RateLimit:       &ir.RateLimitService{Address: "127.0.0.1", Port: uint32(env.rateLimitPort), Domain: "portico", FailOpen: true},
		ShutdownTimeout: 5 * time.Second,
	}, log)
	if err != nil {
		return nil, 0, noop, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- cp.Run(runCtx) }()
	return cp, ingressPort, func(context.Context) { cancel(); <-done }, nil
}

// startIngress starts an ingress Envoy fed by cp and returns once it has
// its configuration.
func startIngress(ctx context.Context, cp *controlplane.ControlPlane, nodeID string) (*localenv.Envoy, error) {
	xdsHost, xdsPortText, err := net.SplitHostPort(cp.XDSAddr())
	if err != nil {
		return nil, err
	}
	xdsPort, err := strconv.Atoi(xdsPortText)
	if err != nil {
		return nil, err
	}
	return localenv.StartEnvoy(ctx, localenv.EnvoyOptions{
		Name: nodeID, Dir: filepath.Join(env.dir, "ingress"), WaitLive: true, LogLevel: "info",
		Bootstrap: func(adminPort int) ([]byte, error) {
			return envoy.Ingress(envoy.IngressBootstrap{
				NodeID: nodeID, AdminPort: adminPort, XDSHost: xdsHost, XDSPort: xdsPort,
				OutlierLog: filepath.Join(env.dir, "ingress", nodeID+"-outlier.log"),
			})
		},
	})
}

func mustCreate(path string) *os.File {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		panic(err)
	}
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	return f
}
