package translate

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushosts "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/services/platform/contract"
)

// safeRetryOn are the failures where the request never reached a
// service, so retrying is safe whatever the method.
const safeRetryOn = "connect-failure,refused-stream"

func routeConfiguration(x *ir.Xds) (*route.RouteConfiguration, error) {
	var routes []*route.Route
	add := func(r ir.Route, rs ...*route.Route) error {
		for _, er := range rs {
			for _, f := range httpFeatures() {
				if err := f.patchRoute(x, r, er); err != nil {
					return fmt.Errorf("route %s: %w", r.Name, err)
				}
			}
		}
		routes = append(routes, rs...)
		return nil
	}
	// The guard routes (guardroutes.go) around the model's.
	if err := add(bodyTooLargeRoute()); err != nil {
		return nil, err
	}
	guards := methodNotAllowedRoutes(x.Routes)
	addGuards := func(at int) error {
		for _, r := range guards[at] {
			if err := add(r, methodNotAllowedRoute(r)); err != nil {
				return err
			}
		}
		return nil
	}
	for i, r := range x.Routes {
		if err := addGuards(i); err != nil {
			return nil, err
		}
		if guard, er, ok := unknownMethodRoute(r); ok {
			if err := add(guard, er); err != nil {
				return nil, err
			}
		}
		rs, err := envoyRoutes(r)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", r.Name, err)
		}
		if err := add(r, rs...); err != nil {
			return nil, err
		}
	}
	if err := addGuards(len(x.Routes)); err != nil {
		return nil, err
	}
	return &route.RouteConfiguration{
		Name: RouteConfigName,
		VirtualHosts: []*route.VirtualHost{{
			Name:    "ingress",
			Domains: []string{"*"},
			Routes:  routes,
		}},
		// Clusters arrive by CDS on the same stream; a route is never
		// rejected for naming one that is still on its way.
		ValidateClusters: wrapperspb.Bool(false),
	}, nil
}

// envoyRoutes gives one model route as Envoy routes. A route that retries
// and also matches non-idempotent methods is split: reads, and writes
// with an Idempotency-Key, retry on the configured failures; other writes
// only where the request cannot have arrived.
func envoyRoutes(r ir.Route) ([]*route.Route, error) {
	if r.Direct != nil {
		return []*route.Route{directRoute(r, r.Methods)}, nil
	}
	if r.Retry == nil {
		er, err := forwardRoute(r, r.Methods, nil)
		return []*route.Route{er}, err
	}
	reads, writes := splitIdempotent(r.Methods)
	var out []*route.Route
	if len(reads) > 0 {
		rp, err := retryPolicy(r.Retry, strings.Join(r.Retry.On, ","))
		if err != nil {
			return nil, err
		}
		er, err := forwardRoute(r, reads, rp)
		if err != nil {
			return nil, err
		}
		out = append(out, er)
	}
	// Empty methods means every method: the write route catches the rest.
	if len(writes) > 0 || len(r.Methods) == 0 {
		// Writes with an Idempotency-Key retry as reads do, where the
		// service deduplicates them (idempotentwrites.go).
		if r.RetryKeyedWrites {
			keyed, err := keyedWriteRoute(r, writes)
			if err != nil {
				return nil, err
			}
			out = append(out, keyed)
		}
		rp, err := retryPolicy(r.Retry, safeRetryOn)
		if err != nil {
			return nil, err
		}
		er, err := forwardRoute(r, writes, rp)
		if err != nil {
			return nil, err
		}
		out = append(out, er)
	}
	return out, nil
}

// splitIdempotent separates a route's methods. With no methods (all), the
// reads are the idempotent methods and the writes stay unrestricted.
func splitIdempotent(methods []string) (reads, writes []string) {
	if len(methods) == 0 {
		return slices.Clone(ir.IdempotentMethods), nil
	}
	for _, m := range methods {
		if slices.Contains(ir.IdempotentMethods, m) {
			reads = append(reads, m)
		} else {
			writes = append(writes, m)
		}
	}
	return reads, writes
}

func forwardRoute(r ir.Route, methods []string, retry *route.RetryPolicy) (*route.Route, error) {
	er := baseRoute(r, methods)
	action := &route.RouteAction{
		ClusterSpecifier: &route.RouteAction_Cluster{Cluster: r.Cluster},
		Timeout:          durationpb.New(r.Timeout),
		RetryPolicy:      retry,
	}
	if r.Rewrite != "" {
		if r.Path != "" {
			action.RegexRewrite = &matcher.RegexMatchAndSubstitute{
				Pattern:      &matcher.RegexMatcher{Regex: exactPathRegex(r.Path)},
				Substitution: r.Rewrite,
			}
		} else {
			action.PrefixRewrite = r.Rewrite
		}
	}
	er.Action = &route.Route_Route{Route: action}
	if r.ForwardedPrefix != "" {
		er.RequestHeadersToAdd = append(er.RequestHeadersToAdd, setHeader(strings.ToLower(contract.HeaderForwardedPrefix), r.ForwardedPrefix))
	}
	for _, k := range sortedKeys(r.SetHeaders) {
		er.RequestHeadersToAdd = append(er.RequestHeadersToAdd, setHeader(k, r.SetHeaders[k]))
	}
	return er, nil
}

// baseRoute is the match; the filters add their per-route settings.
func baseRoute(r ir.Route, methods []string) *route.Route {
	m := &route.RouteMatch{}
	if r.Path != "" {
		// A trailing slash is tolerated on exact paths.
		m.PathSpecifier = &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: exactPathRegex(r.Path)}}
	} else {
		m.PathSpecifier = &route.RouteMatch_Prefix{Prefix: r.Prefix}
	}
	if len(methods) > 0 {
		m.Headers = []*route.HeaderMatcher{methodMatcher(methods)}
	}
	return &route.Route{Name: r.Name, Match: m}
}

func exactPathRegex(path string) string {
	return "^" + regexp.QuoteMeta(strings.TrimSuffix(path, "/")) + "/?$"
}

func methodMatcher(methods []string) *route.HeaderMatcher {
	sorted := slices.Sorted(slices.Values(methods))
	sm := &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: sorted[0]}}
	if len(sorted) > 1 {
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{
			SafeRegex: &matcher.RegexMatcher{Regex: "^(" + strings.Join(sorted, "|") + ")$"},
		}}
	}
	return &route.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &route.HeaderMatcher_StringMatch{StringMatch: sm}}
}

// retryPolicy retries on another instance than the one that failed.
func retryPolicy(r *ir.Retry, on string) (*route.RetryPolicy, error) {
	previousHosts, err := anypb.New(&previoushosts.PreviousHostsPredicate{})
	if err != nil {
		return nil, err
	}
	return &route.RetryPolicy{
		RetryOn:       on,
		NumRetries:    wrapperspb.UInt32(r.Attempts),
		PerTryTimeout: durationpb.New(r.PerTryTimeout),
		RetryHostPredicate: []*route.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &route.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: previousHosts},
		}},
		HostSelectionRetryMaxAttempts: 5,
		RetryBackOff: &route.RetryPolicy_RetryBackOff{
			BaseInterval: durationpb.New(25 * time.Millisecond),
			MaxInterval:  durationpb.New(250 * time.Millisecond),
		},
	}, nil
}

func setHeader(key, value string) *core.HeaderValueOption {
	return &core.HeaderValueOption{
		Header:       &core.HeaderValue{Key: key, Value: value},
		AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
