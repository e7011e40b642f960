package translate

import (
	"fmt"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
)

// httpFeature is one HTTP filter of the ingress, kept in its own file:
// what it adds to the filter chain, to each route, and to the resources.
// A new filter is a type implementing it plus one line in httpFeatures.
type httpFeature interface {
	// patchHCM appends the feature's filter to the chain when the model
	// uses it.
	patchHCM(x *ir.Xds, mgr *hcm.HttpConnectionManager) error
	// patchRoute sets what one Envoy route, made from r, needs of the
	// filter: its per-route config or the route action's part. It is
	// called for every route, direct answers included.
	patchRoute(x *ir.Xds, r ir.Route, er *route.Route) error
	// patchResources adds the resources the filter depends on, such as
	// the cluster of a service it calls.
	patchResources(x *ir.Xds, res *xdsresources.Set) error
}

// httpFeatures lists the filters in the order requests pass them:
// authenticate, then limit (a subject limit needs the verified subject).
// upstreamErrors puts itself first, whatever its place here: it works on
// responses, which pass the filters in the reverse order. The tracer adds
// no filter (it sets the connection manager's tracing), so its place does
// not matter. The router, which ends every chain, is not a feature. A list
// rather than self-registration: the order matters, and it is read here in
// one place.
func httpFeatures() []httpFeature {
	return []httpFeature{jwtAuthn{}, localRateLimiter{}, globalRateLimiter{}, upstreamErrors{}, tracer{}}
}

// httpFilter wraps a filter's config for the chain.
func httpFilter(name string, cfg proto.Message) (*hcm.HttpFilter, error) {
	a, err := anypb.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", name, err)
	}
	return &hcm.HttpFilter{Name: name, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

// appendFilter adds a filter to the chain.
func appendFilter(mgr *hcm.HttpConnectionManager, name string, cfg proto.Message) error {
	f, err := httpFilter(name, cfg)
	if err != nil {
		return err
	}
	mgr.HttpFilters = append(mgr.HttpFilters, f)
	return nil
}

// setPerRoute sets a filter's per-route config on a route.
func setPerRoute(er *route.Route, filter string, cfg proto.Message) error {
	a, err := anypb.New(cfg)
	if err != nil {
		return fmt.Errorf("per-route %s: %w", filter, err)
	}
	if er.TypedPerFilterConfig == nil {
		er.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	er.TypedPerFilterConfig[filter] = a
	return nil
}
