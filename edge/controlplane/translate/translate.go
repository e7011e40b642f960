// Package translate turns the intermediate model into Envoy resources. It
// is pure: no I/O, no clock, and the output is sorted, so the same model
// always gives byte-identical resources and the server can tell a real
// change from a repeat. Each feature has its own file.
package translate

import (
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
)

// Names shared by the resources and the ingress bootstrap (envoy/).
const (
	ListenerName    = "ingress"
	RouteConfigName = "ingress"
	// LeafSecretName is the ingress's Connect leaf certificate and key.
	LeafSecretName = "ingress-leaf"
	// RootsSecretName holds the mesh's CA roots.
	RootsSecretName = "mesh-roots"
	// RateLimitCluster reaches the global rate-limit service.
	RateLimitCluster = "portico-ratelimit"
	// XdsCluster is the bootstrap's static cluster for this control plane.
	XdsCluster = "portico-xds"
)

// Translate validates the model and returns its resources.
func Translate(x *ir.Xds) (*xdsresources.Set, error) {
	if err := x.Validate(); err != nil {
		return nil, fmt.Errorf("translate: %w", err)
	}
	hcm, err := httpConnectionManager(x)
	if err != nil {
		return nil, err
	}
	lis, err := listener(x.Listener, hcm)
	if err != nil {
		return nil, err
	}
	routes, err := routeConfiguration(x)
	if err != nil {
		return nil, err
	}
	res := &xdsresources.Set{
		Listeners: []types.Resource{lis},
		Routes:    []types.Resource{routes},
	}
	for _, c := range x.Clusters {
		cl, err := meshCluster(c)
		if err != nil {
			return nil, err
		}
		res.Clusters = append(res.Clusters, cl)
		res.Endpoints = append(res.Endpoints, loadAssignment(c))
	}
	for _, f := range httpFeatures() {
		if err := f.patchResources(x, res); err != nil {
			return nil, err
		}
	}
	if len(x.Clusters) > 0 {
		res.Secrets = secrets(x.Identity)
	}
	return res, nil
}
