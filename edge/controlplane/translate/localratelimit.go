package translate

import (
	"fmt"
	"math"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	localrl "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
)

const (
	localRateLimitFilterName = "envoy.filters.http.local_ratelimit"
	localStatPrefix          = "ingress_local_ratelimit"
)

// localRateLimiter is a token bucket per route, counted in each Envoy.
// Its filter is always in the chain and inert on its own: each route
// brings its bucket.
type localRateLimiter struct{}

func (localRateLimiter) patchHCM(_ *ir.Xds, mgr *hcm.HttpConnectionManager) error {
	return appendFilter(mgr, localRateLimitFilterName, &localrl.LocalRateLimit{StatPrefix: localStatPrefix})
}

func (localRateLimiter) patchRoute(_ *ir.Xds, r ir.Route, er *route.Route) error {
	if r.LocalRateLimit == nil {
		return nil
	}
	return setPerRoute(er, localRateLimitFilterName, localRateLimit(*r.LocalRateLimit))
}

func (localRateLimiter) patchResources(*ir.Xds, *xdsresources.Set) error { return nil }

// localRateLimit is a route's token bucket.
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
		// (the next fill comes within one interval) and its size. (Envoy's
		// X-RateLimit-* headers would be added to every response, beside
		// the global limit's own.)
		ResponseHeadersToAdd: []*core.HeaderValueOption{
			setHeader("retry-after", fmt.Sprint(int(math.Ceil(b.Interval.Seconds())))),
			setHeader("x-ratelimit-limit", fmt.Sprintf("%d;w=%d", b.MaxTokens, int(math.Ceil(b.Interval.Seconds())))),
			setHeader("x-ratelimit-remaining", "0"),
		},
	}
}
