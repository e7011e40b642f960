package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("LIVE\n"))
	}))
	t.Cleanup(srv.Close)
	if err := probe([]string{srv.URL + "/ready", "LIVE"}); err != nil {
		t.Errorf("ready and LIVE: %v", err)
	}
	for _, args := range [][]string{
		{srv.URL + "/ready", "PRE_INITIALIZING"},
		{srv.URL + "/missing"},
		{"http://127.0.0.1:1/ready"},
		{},
	} {
		if err := probe(args); err == nil {
			t.Errorf("probe %q passed", args)
		}
	}
}

// validate has the pinned Envoy check a configuration without running it.
func validate(t *testing.T, args ...string) {
	t.Helper()
	bin, err := localenv.Binary("envoy")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--mode", "validate"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("envoy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestIngressBootstrapValidates(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := ingressBootstrap([]string{"-xds", "controlplane:18000"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"address: controlplane, port_value: 18000", "address: 0.0.0.0, port_value: 19100"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bootstrap has no %q:\n%s", want, out.String())
		}
	}
	path := filepath.Join(t.TempDir(), "ingress.yaml")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	validate(t, "--config-path", path)
	for _, bad := range [][]string{{"-xds", "controlplane"}, {"-xds", ":18000"}, {}} {
		if err := ingressBootstrap(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("ingress-bootstrap %q: no error", bad)
		}
	}
}

// TestSidecarBootstrapValidates registers a service with a sidecar in a
// real agent, has the pinned Consul write the sidecar's bootstrap with the
// arguments the sidecar command uses, and has the pinned Envoy validate it
// together with the metrics overlay, exactly as the container runs it.
func TestSidecarBootstrapValidates(t *testing.T) {
	consul := localenvtest.StartConsul(t)
	client, err := consul.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "pod-app-1", Name: "pod-app", Address: "127.0.0.1", Port: 8081,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{Port: 21081}},
	}); err != nil {
		t.Fatal(err)
	}
	envoyBin, err := localenv.Binary("envoy")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_HTTP_ADDR", consul.HTTPAddr())
	c := sidecarConfig{
		serviceID: "pod-app-1", adminPort: 19081, appPort: 8081, metricsPort: 9102,
		consul: consul.Binary(), envoy: envoyBin, grpcAddr: "http://" + consul.GRPCAddr(),
		bootstrap: filepath.Join(t.TempDir(), "bootstrap.json"), logLevel: "warn",
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	bootstrap, err := c.generateBootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(bootstrap, []byte(`"port_value": 19081`)) {
		t.Errorf("bootstrap without the admin port 19081:\n%s", bootstrap)
	}
	if err := os.WriteFile(c.bootstrap, bootstrap, 0o600); err != nil {
		t.Fatal(err)
	}
	args := c.envoyArgs()
	if args[0] != envoyBin {
		t.Fatalf("argv[0] = %q, want the envoy binary", args[0])
	}
	validate(t, args[1:]...)
}

func TestSidecarFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"-for", "users", "-admin-port", "19081"},
		{"-for", "users", "-app-port", "8081"},
		{"-admin-port", "19081", "-app-port", "8081"},
	} {
		if err := sidecar(args); err == nil || !strings.Contains(err.Error(), "required") {
			t.Errorf("sidecar %q: %v, want an error naming the required flags", args, err)
		}
	}
}

// TestMeshEntries: mesh-config's command writes every entry to the server,
// the sidecars' collector moved to the address given and nowhere else.
func TestMeshEntries(t *testing.T) {
	consul := localenvtest.StartConsul(t)
	client, err := consul.Client()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // as `docker compose run --rm mesh-config` reruns it
		if err := meshEntries([]string{"-http-addr", "http://" + consul.HTTPAddr(), "-tracing-collector", "jaeger:4317"}); err != nil {
			t.Fatal(err)
		}
	}
	e, _, err := client.ConfigEntries().Get(api.ProxyDefaults, api.ProxyConfigGlobal, nil)
	if err != nil {
		t.Fatal(err)
	}
	clusters, _ := e.(*api.ProxyConfigEntry).Config["envoy_extra_static_clusters_json"].(string)
	if !strings.Contains(clusters, `"address":"jaeger"`) || !strings.Contains(clusters, `"portValue":4317`) || strings.Contains(clusters, "127.0.0.1") {
		t.Errorf("proxy-defaults' collector cluster: %s", clusters)
	}
	if _, _, err := client.ConfigEntries().Get(api.ServiceIntentions, "products", nil); err != nil {
		t.Errorf("the intentions were not written: %v", err)
	}
	for _, bad := range [][]string{{"-tracing-collector", "jaeger"}, {"-http-addr", "http://" + consul.HTTPAddr(), "extra"}} {
		if err := meshEntries(bad); err == nil {
			t.Errorf("meshEntries(%q) succeeded", bad)
		}
	}
}
