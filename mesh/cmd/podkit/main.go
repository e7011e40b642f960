// Command podkit is the glue the Docker Compose stack (docker-compose.yml,
// Dockerfile) needs inside its images, which have no shell tools of their
// own:
//
//	podkit probe URL [TEXT]
//	    exit 0 when GET URL answers 200 (and its body contains TEXT):
//	    the healthcheck of every Portico container.
//	podkit ingress-bootstrap -xds HOST:PORT [flags]
//	    print the ingress Envoy's bootstrap (envoy.Ingress), rendered
//	    once when the image is built.
//	podkit sidecar -for SERVICE_ID -admin-port N -app-port N [flags]
//	    run a Connect sidecar the way `make up` does: have `consul connect
//	    envoy -bootstrap` write the bootstrap of the registered proxy, then
//	    exec Envoy with it, plus a listener that serves the pod's metrics
//	    to Prometheus (the app and Envoy's admin stay on loopback).
//	podkit mesh-entries -http-addr URL [-tracing-collector HOST:PORT]
//	    write mesh/entries (embedded: the files make up applies) to the
//	    Consul server, the sidecars' OTLP collector moved from the files'
//	    node-local 127.0.0.1:4317 to HOST:PORT (entries.TracingCollector).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/envoy"
	"github.com/portico-mesh/portico/mesh/entries"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: podkit probe|ingress-bootstrap|sidecar|mesh-entries [flags]")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "probe":
		err = probe(args)
	case "ingress-bootstrap":
		err = ingressBootstrap(args, os.Stdout)
	case "sidecar":
		err = sidecar(args)
	case "mesh-entries":
		err = meshEntries(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "podkit:", err)
		os.Exit(1)
	}
}

// probe is a container healthcheck: one GET, a short timeout, no proxy.
func probe(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return errors.New("usage: podkit probe URL [TEXT]")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil) //nolint:gosec // G704: the URL is the healthcheck the image's operator wrote
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req) //nolint:gosec // G704: see above
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", args[0], resp.Status)
	}
	if len(args) == 2 && !strings.Contains(string(body), args[1]) {
		return fmt.Errorf("%s: body has no %q", args[0], args[1])
	}
	return nil
}

func ingressBootstrap(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ingress-bootstrap", flag.ContinueOnError)
	nodeID := fs.String("node-id", "ingress-1", "xDS node id")
	adminPort := fs.Int("admin-port", 19000, "Envoy admin port, on loopback")
	xds := fs.String("xds", "", "control plane ADS address, host:port")
	metricsHost := fs.String("metrics-host", "0.0.0.0", "address of the /stats/prometheus listener")
	metricsPort := fs.Int("metrics-port", 19100, "port of the /stats/prometheus listener; 0 leaves it out")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, port, err := splitHostPort(*xds)
	if err != nil {
		return fmt.Errorf("-xds: %w", err)
	}
	b, err := envoy.Ingress(envoy.IngressBootstrap{
		NodeID: *nodeID, AdminPort: *adminPort, XDSHost: host, XDSPort: port,
		MetricsHost: *metricsHost, MetricsPort: *metricsPort,
	})
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}

// meshEntries writes the mesh's config entries to a Consul server, as
// `make up` does (entries.Apply), so that a stack whose collector is not on
// each node's loopback still applies the one set of files.
func meshEntries(args []string) error {
	fs := flag.NewFlagSet("mesh-entries", flag.ContinueOnError)
	httpAddr := fs.String("http-addr", "http://127.0.0.1:8500", "the Consul server's HTTP API")
	collector := fs.String("tracing-collector", "", "host:port of the OTLP/gRPC collector the sidecars trace to; empty keeps the files' 127.0.0.1:4317")
	timeout := fs.Duration("timeout", time.Minute, "how long writing the entries may take")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("mesh-entries: unexpected arguments %q", fs.Args())
	}
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = *httpAddr
	client, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	var opts []entries.Option
	if *collector != "" {
		opts = append(opts, entries.TracingCollector(*collector))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	return entries.Apply(ctx, client, opts...)
}

func splitHostPort(addr string) (string, int, error) {
	host, portText, ok := strings.Cut(addr, ":")
	port, err := strconv.Atoi(portText)
	if !ok || host == "" || err != nil || port <= 0 {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	return host, port, nil
}

// sidecarConfig is one pod's sidecar.
type sidecarConfig struct {
	serviceID   string
	adminPort   int
	appPort     int
	metricsPort int
	consul      string // the consul binary
	envoy       string // the envoy binary
	grpcAddr    string // the local agent's plaintext xDS port
	bootstrap   string // where the generated bootstrap is written
	logLevel    string
	wait        time.Duration
}

func sidecar(args []string) error {
	var c sidecarConfig
	fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
	fs.StringVar(&c.serviceID, "for", "", "id of the service instance this is the sidecar of")
	fs.IntVar(&c.adminPort, "admin-port", 0, "Envoy admin port, on loopback")
	fs.IntVar(&c.appPort, "app-port", 0, "the app's port on loopback, whose /metrics the metrics listener serves")
	fs.IntVar(&c.metricsPort, "metrics-port", 9102, "port of the pod's metrics listener, on every address")
	fs.StringVar(&c.consul, "consul", "consul", "consul binary")
	fs.StringVar(&c.envoy, "envoy", "envoy", "envoy binary")
	fs.StringVar(&c.grpcAddr, "grpc-addr", "http://127.0.0.1:8502", "the local agent's xDS (gRPC) address")
	fs.StringVar(&c.bootstrap, "bootstrap", "/tmp/envoy-bootstrap.json", "where to write the bootstrap")
	fs.StringVar(&c.logLevel, "log-level", "warn", "Envoy log level")
	fs.DurationVar(&c.wait, "wait", 2*time.Minute, "how long to wait for the service's registration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.serviceID == "" || c.adminPort <= 0 || c.appPort <= 0 || c.metricsPort <= 0 {
		return errors.New("sidecar: -for, -admin-port, -app-port and -metrics-port are required")
	}
	envoyPath, err := exec.LookPath(c.envoy)
	if err != nil {
		return err
	}
	c.envoy = envoyPath
	ctx, cancel := context.WithTimeout(context.Background(), c.wait)
	defer cancel()
	bootstrap, err := c.generateBootstrap(ctx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.bootstrap, bootstrap, 0o600); err != nil {
		return err
	}
	// Envoy replaces podkit, so that it gets the container's signals and
	// its exit is the container's.
	return syscall.Exec(c.envoy, c.envoyArgs(), os.Environ()) //nolint:gosec // G204: the image's own Envoy, with the flags of its command line
}

// generateBootstrap retries until the service has registered its sidecar
// with the local agent: the app registers once it listens, which may be
// after this container starts.
func (c sidecarConfig) generateBootstrap(ctx context.Context) ([]byte, error) {
	for {
		cmd := exec.CommandContext(ctx, c.consul, c.consulArgs()...) //nolint:gosec // G204: the image's own consul, with the flags of its command line
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			return out, nil
		}
		fmt.Fprintf(os.Stderr, "podkit: consul connect envoy: %v: %s; retrying\n", err, strings.TrimSpace(stderr.String()))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no bootstrap for the sidecar of %s: %w", c.serviceID, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

func (c sidecarConfig) consulArgs() []string {
	return []string{
		"connect", "envoy",
		"-sidecar-for", c.serviceID,
		"-admin-bind", "127.0.0.1:" + strconv.Itoa(c.adminPort),
		"-grpc-addr", c.grpcAddr,
		"-envoy-binary", c.envoy,
		// As in make up (mesh/localenv/sidecar.go): Consul 1.22 lists Envoy
		// 1.33 to 1.35, the pinned Envoy is 1.36.
		"-ignore-envoy-compatibility",
		"-bootstrap",
	}
}

func (c sidecarConfig) envoyArgs() []string {
	return []string{
		c.envoy,
		"--config-path", c.bootstrap,
		"--config-yaml", metricsOverlay(c.adminPort, c.appPort, c.metricsPort),
		"--disable-hot-restart",
		"--concurrency", "1",
		"-l", c.logLevel,
	}
}

// metricsOverlay is merged into Consul's bootstrap: a listener on every
// address of the pod that serves only GET /stats/prometheus (the sidecar's
// own metrics, from its admin API) and GET /metrics (the app's). Prometheus
// runs in another container and cannot reach the pod's loopback, where the
// app and the admin API stay; nothing else of either is exposed.
func metricsOverlay(adminPort, appPort, metricsPort int) string {
	return fmt.Sprintf(`static_resources:
  listeners:
    - name: pod_metrics
      address:
        socket_address: { address: 0.0.0.0, port_value: %[3]d }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: pod_metrics
                route_config:
                  virtual_hosts:
                    - name: pod_metrics
                      domains: ["*"]
                      routes:
                        - match: { path: /stats/prometheus, headers: [{ name: ":method", string_match: { exact: GET } }] }
                          route: { cluster: pod_envoy_admin }
                        - match: { path: /metrics, headers: [{ name: ":method", string_match: { exact: GET } }] }
                          route: { cluster: pod_app }
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: pod_envoy_admin
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: pod_envoy_admin
        endpoints:
          - lb_endpoints:
              - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %[1]d } } }
    - name: pod_app
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: pod_app
        endpoints:
          - lb_endpoints:
              - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %[2]d } } }
`, adminPort, appPort, metricsPort)
}
