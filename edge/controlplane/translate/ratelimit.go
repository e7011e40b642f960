package translate

import (
	"fmt"
	"github.com/portico-mesh/portico/services/platform/contract"
	"math"
	"slices"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitconf "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	localrl "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	globalrl "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
)

// Descriptor keys sent to the rate-limit service.
const (
	descriptorRoute   = "route"
	descriptorClient  = "remote_address" // what Envoy's remote_address action sends
	descriptorSubject = "subject"
	localStatPrefix   = "ingress_local_ratelimit"
	globalStatPrefix  = "ingress_ratelimit"
)

// localRateLimitFilter is inert on its own: each route brings its bucket.
func localRateLimitFilter() (*hcm.HttpFilter, error) {
	return httpFilter("envoy.filters.http.local_ratelimit", &localrl.LocalRateLimit{StatPrefix: localStatPrefix})
}

// localRateLimit is a route's token bucket, counted in this Envoy only.
func localRateLimit(b ir.TokenBucket) *localrl.LocalRateLimit {
	full := &core.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
	return &localrl.LocalRateLimit{
		StatPrefix: localStatPrefix,
		TokenBucket: &typev3.TokenBucket{
			MaxTokens:     b.MaxTokens,
			TokensPerFill: wrapperspb.UInt32(b.Tokens),
			FillInterval:  durationpb.New(b.Interval),
		},
		FilterEnabled:  full,
		FilterEnforced: full,
		// Only a refused client hears about the bucket: when it may retry
		// and its size. (Envoy's X-RateLimit-* headers would be added to
		// every response, beside the global limit's own.)
		ResponseHeadersToAdd: []*core.HeaderValueOption{
			setHeader("retry-after", fmt.Sprint(int(math.Ceil(b.Interval.Seconds())))),
			setHeader("x-ratelimit-limit", fmt.Sprintf("%d;w=%d", b.MaxTokens, int(math.Ceil(b.Interval.Seconds())))),
			setHeader("x-ratelimit-remaining", "0"),
		},
	}
}

// globalRateLimitFilter asks the rate-limit service about every request a
// route attaches descriptors to. When the service cannot answer, requests
// pass (fail open): the local buckets still bound each instance, and an
// outage of a counter must not take the whole API down.
func globalRateLimitFilter(s ir.RateLimitService) (*hcm.HttpFilter, error) {
	return httpFilter("envoy.filters.http.ratelimit", &globalrl.RateLimit{
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
	})
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
