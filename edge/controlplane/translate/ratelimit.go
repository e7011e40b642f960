package translate

import (
	"fmt"
	"slices"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	ratelimitconf "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	globalrl "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
	"github.com/portico-mesh/portico/services/platform/contract"
)

// Descriptor keys sent to the rate-limit service.
const (
	descriptorRoute           = "route"
	descriptorClient          = "remote_address" // what Envoy's remote_address action sends
	descriptorSubject         = "subject"
	globalStatPrefix          = "ingress_ratelimit"
	globalRateLimitFilterName = "envoy.filters.http.ratelimit"
)

// globalRateLimiter counts limits shared by every ingress instance in the
// rate-limit service, when the model has one: the filter, the descriptors
// each route sends, the service's cluster and its own configuration.
type globalRateLimiter struct{}

func (globalRateLimiter) patchHCM(x *ir.Xds, mgr *hcm.HttpConnectionManager) error {
	if x.RateLimitService == nil {
		return nil
	}
	return appendFilter(mgr, globalRateLimitFilterName, globalRateLimit(*x.RateLimitService))
}

// patchRoute attaches the descriptors to the route action; direct answers
// have none and are never counted.
func (globalRateLimiter) patchRoute(_ *ir.Xds, r ir.Route, er *route.Route) error {
	if action := er.GetRoute(); action != nil {
		action.RateLimits = routeRateLimits(r)
	}
	return nil
}

func (globalRateLimiter) patchResources(x *ir.Xds, res *xdsresources.Set) error {
	if x.RateLimitService == nil {
		return nil
	}
	cl, err := rateLimitServiceCluster(*x.RateLimitService)
	if err != nil {
		return err
	}
	res.Clusters = append(res.Clusters, cl)
	res.RateLimitConfigs = []types.Resource{rateLimitConfig(x)}
	return nil
}

// globalRateLimit asks the rate-limit service about every request a route
// attaches descriptors to. When the service cannot answer, requests pass
// (fail open): the local buckets still bound each instance, and an outage
// of a counter must not take the whole API down. Its X-RateLimit-* headers
// (draft 03) are on every counted response; on a refusal, X-RateLimit-Reset
// also becomes Retry-After (localreply.go).
func globalRateLimit(s ir.RateLimitService) *globalrl.RateLimit {
	return &globalrl.RateLimit{
		Domain:          s.Domain,
		StatPrefix:      globalStatPrefix,
		Timeout:         durationpb.New(ir.DefaultConnectTimeout / 10),
		FailureModeDeny: !s.FailOpen,
		RateLimitService: &ratelimitconf.RateLimitServiceConfig{
			TransportApiVersion: core.ApiVersion_V3,
			GrpcService: &core.GrpcService{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: RateLimitCluster},
			}},
		},
		EnableXRatelimitHeaders: globalrl.RateLimit_DRAFT_VERSION_03,
	}
}

// routeRateLimits are the descriptors a route sends: its name plus the
// client's address, or plus the verified subject. A request without a
// subject sends no subject descriptor.
func routeRateLimits(r ir.Route) []*route.RateLimit {
	var out []*route.RateLimit
	for _, g := range r.GlobalRateLimits {
		actions := []*route.RateLimit_Action{{ActionSpecifier: &route.RateLimit_Action_GenericKey_{
			GenericKey: &route.RateLimit_Action_GenericKey{DescriptorKey: descriptorRoute, DescriptorValue: r.Name},
		}}}
		switch g.Key {
		case ir.ByClient:
			actions = append(actions, &route.RateLimit_Action{ActionSpecifier: &route.RateLimit_Action_RemoteAddress_{
				RemoteAddress: &route.RateLimit_Action_RemoteAddress{},
			}})
		case ir.BySubject:
			actions = append(actions, &route.RateLimit_Action{ActionSpecifier: &route.RateLimit_Action_RequestHeaders_{
				RequestHeaders: &route.RateLimit_Action_RequestHeaders{HeaderName: strings.ToLower(contract.HeaderUserID), DescriptorKey: descriptorSubject},
			}})
		}
		out = append(out, &route.RateLimit{Actions: actions})
	}
	return out
}

// rateLimitConfig is the rate-limit service's configuration for every
// route's global limits, sorted by route name.
func rateLimitConfig(x *ir.Xds) *rlsconf.RateLimitConfig {
	cfg := &rlsconf.RateLimitConfig{Name: x.RateLimitService.Domain, Domain: x.RateLimitService.Domain}
	for _, r := range x.Routes {
		if len(r.GlobalRateLimits) == 0 {
			continue
		}
		d := &rlsconf.RateLimitDescriptor{Key: descriptorRoute, Value: r.Name}
		for _, g := range r.GlobalRateLimits {
			key := descriptorClient
			if g.Key == ir.BySubject {
				key = descriptorSubject
			}
			d.Descriptors = append(d.Descriptors, &rlsconf.RateLimitDescriptor{
				Key:       key,
				RateLimit: &rlsconf.RateLimitPolicy{Unit: rateLimitUnit(g.Unit), RequestsPerUnit: g.Requests},
			})
		}
		cfg.Descriptors = append(cfg.Descriptors, d)
	}
	slices.SortFunc(cfg.Descriptors, func(a, b *rlsconf.RateLimitDescriptor) int { return strings.Compare(a.Value, b.Value) })
	return cfg
}

func rateLimitUnit(unit string) rlsconf.RateLimitUnit {
	switch unit {
	case "second":
		return rlsconf.RateLimitUnit_SECOND
	case "minute":
		return rlsconf.RateLimitUnit_MINUTE
	case "hour":
		return rlsconf.RateLimitUnit_HOUR
	case "day":
		return rlsconf.RateLimitUnit_DAY
	default:
		return rlsconf.RateLimitUnit_UNKNOWN
	}
}

// rateLimitServiceCluster reaches envoyproxy/ratelimit over plaintext gRPC
// on loopback.
func rateLimitServiceCluster(s ir.RateLimitService) (*cluster.Cluster, error) {
	h2, err := http2Upstream()
	if err != nil {
		return nil, fmt.Errorf("rate-limit cluster: %w", err)
	}
	return &cluster.Cluster{
		Name:                          RateLimitCluster,
		ClusterDiscoveryType:          &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS},
		ConnectTimeout:                durationpb.New(ir.DefaultConnectTimeout),
		TypedExtensionProtocolOptions: h2,
		LoadAssignment: &endpoint.ClusterLoadAssignment{
			ClusterName: RateLimitCluster,
			Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(s.Address, s.Port)}},
			}}}},
		},
	}, nil
}
