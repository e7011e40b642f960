package stack

import (
	"context"
	"fmt"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// EdgeConfig configures StartEdge.
type EdgeConfig struct {
	// Instance is the edge's instance; its Env gets EDGE_UPSTREAMS and
	// REDIS_URL added.
	Instance InstanceConfig
	// RedisAddr is the cache's Redis host:port. Required.
	RedisAddr string
	// UsersUpstreamPort and ProductsUpstreamPort are the edge sidecar's
	// local listeners for its upstreams; zero ports are chosen.
	UsersUpstreamPort, ProductsUpstreamPort int
}

// Edge is the caching and docs service, in the mesh like the others.
type Edge struct {
	*Instance
	// UsersUpstream and ProductsUpstream are its sidecar's listeners.
	UsersUpstream, ProductsUpstream string
}

// StartEdge runs the edge and its sidecar, and returns once it passes in
// Consul and reaches both services through its sidecar (passing in Consul
// does not mean the sidecar has their endpoints yet).
func (s *Stack) StartEdge(ctx context.Context, cfg EdgeConfig) (*Edge, error) {
	if err := localenv.FreePorts(&cfg.UsersUpstreamPort, &cfg.ProductsUpstreamPort); err != nil {
		return nil, err
	}
	e := &Edge{
		UsersUpstream:    localenv.Loopback(cfg.UsersUpstreamPort),
		ProductsUpstream: localenv.Loopback(cfg.ProductsUpstreamPort),
	}
	inst := cfg.Instance
	// Loopback addresses: the edge's registration asks its sidecar for
	// these upstream listeners.
	inst.Env = append([]string{
		fmt.Sprintf("EDGE_UPSTREAMS=users=%s,products=%s", e.UsersUpstream, e.ProductsUpstream),
		"REDIS_URL=redis://" + cfg.RedisAddr + "/0",
	}, inst.Env...)
	started, err := s.StartInstances(ctx, inst)
	if len(started) > 0 {
		e.Instance = started[0]
	}
	if err != nil {
		return e, err
	}
	for _, up := range []string{e.UsersUpstream, e.ProductsUpstream} {
		if err := WaitOK(ctx, "http://"+up+"/readyz", ""); err != nil {
			return e, fmt.Errorf("edge upstream: %w", err)
		}
	}
	return e, nil
}
