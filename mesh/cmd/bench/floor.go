package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// floorPath is the benchmark's control: one Envoy that does nothing but
// route (HTTP/1.1, plaintext, no filter but the router, no access log,
// no TLS) in front of the users service. What it adds to direct is the
// least any Envoy hop costs on this machine, measured in the same run as
// the mesh's hops, so that each path's cost can be read as so many of
// these floors plus its own work.
const floorPath = "envoy-floor"

// floorProcess names the control Envoy in the CPU and memory tables.
const floorProcess = "floor-envoy"

// floorEnvoy is the control Envoy; its owner stops it.
type floorEnvoy struct {
	envoy *localenv.Envoy
	port  int
}

// startFloorEnvoy starts the control Envoy on free ports under dir,
// forwarding to the users service.
func startFloorEnvoy(ctx context.Context, dir string) (*floorEnvoy, error) {
	target, err := url.Parse(usersURL)
	if err != nil {
		return nil, err
	}
	var port int
	if err := localenv.FreePorts(&port); err != nil {
		return nil, err
	}
	e, err := localenv.StartEnvoy(ctx, localenv.EnvoyOptions{
		Name: floorProcess, Dir: dir,
		Bootstrap: func(adminPort int) ([]byte, error) {
			return fmt.Appendf(nil, floorBootstrap, adminPort, port, target.Hostname(), target.Port()), nil
		},
	})
	if err != nil {
		return nil, err
	}
	return &floorEnvoy{envoy: e, port: port}, nil
}

// URL is where the control Envoy listens.
func (f *floorEnvoy) URL() string { return "http://" + localenv.Loopback(f.port) }

// process is its entry for the CPU and memory tables.
func (f *floorEnvoy) process() processPort { return processPort{Name: floorProcess, Port: f.port} }

func (f *floorEnvoy) stop() error {
	if f == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f.envoy.Stop(ctx)
}

// floorDir is where the control Envoy's bootstrap and log go.
func floorDir(root string) string { return filepath.Join(root, ".run", "bench", "floor-envoy") }

// floorBootstrap: admin port, listener port, users host and port.
const floorBootstrap = `admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
static_resources:
  listeners:
  - name: floor
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: floor
          route_config:
            virtual_hosts: [{name: users, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: users}}]}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: users
    type: STATIC
    load_assignment:
      cluster_name: users
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`
