package envoy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/envoy"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// TestIngressBootstrapValidates renders the bootstrap and has the pinned
// Envoy validate it, with and without the metrics listener.
func TestIngressBootstrapValidates(t *testing.T) {
	bin, err := localenv.Binary("envoy")
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]envoy.IngressBootstrap{
		"minimal": {NodeID: "ingress-1", AdminPort: 19000, XDSHost: "127.0.0.1", XDSPort: 18000},
		"full": {
			NodeID: "ingress-2", AdminPort: 19001, XDSHost: "controlplane.service.consul", XDSPort: 18000,
			MetricsHost: "0.0.0.0", MetricsPort: 19100, OutlierLog: "/dev/stdout",
		},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := envoy.Ingress(p)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Admin struct {
					Address struct {
						SocketAddress struct {
							Address string `json:"address"`
						} `json:"socket_address"`
					} `json:"address"`
				} `json:"admin"`
			}
			if err := yaml.Unmarshal(out, &doc); err != nil {
				t.Fatalf("not YAML: %v\n%s", err, out)
			}
			if got := doc.Admin.Address.SocketAddress.Address; got != "127.0.0.1" {
				t.Fatalf("admin bound to %q, want loopback only", got)
			}
			path := filepath.Join(t.TempDir(), "bootstrap.yaml")
			if err := os.WriteFile(path, out, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--mode", "validate", "-c", path, "--disable-hot-restart", "-l", "error")
			if msg, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(msg), "OK") {
				t.Fatalf("envoy rejects the bootstrap: %v\n%s\n%s", err, msg, out)
			}
		})
	}
}

func TestIngressBootstrapNeedsItsParameters(t *testing.T) {
	if _, err := envoy.Ingress(envoy.IngressBootstrap{NodeID: "x"}); err == nil {
		t.Fatal("a bootstrap without admin port and xDS address was rendered")
	}
}
