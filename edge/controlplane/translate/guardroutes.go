package translate

import (
	"math"
	"slices"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	envoytype "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/problem"
)

// Guard routes are answers the ingress gives for every model: they are
// not rules of the edge configuration but how its routes are held to the
// HTTP contract. Their bodies are written by the local reply mappers.

// bodyTooLargeRoute refuses, before anything else (the token check
// included: the refusal says nothing about the API), a request whose
// declared Content-Length is over contract.MaxRequestBody. A body sent
// without a length (chunked) is left to the service, which applies the
// same limit; so the ingress never buffers a body to count it.
func bodyTooLargeRoute() (ir.Route, *route.Route) {
	r := ir.Route{
		Name: "request-body-too-large", Prefix: "/", Public: true,
		Direct: &ir.DirectResponse{Status: 413, ContentType: problem.ContentType},
	}
	er := directRoute(r, nil)
	er.Match.Headers = append(er.Match.Headers, &route.HeaderMatcher{
		Name: "content-length",
		HeaderMatchSpecifier: &route.HeaderMatcher_RangeMatch{RangeMatch: &envoytype.Int64Range{
			Start: contract.MaxRequestBody + 1, End: math.MaxInt64,
		}},
	})
	return r, er
}

// methodNotAllowedRoutes answer 405 with Allow for a path that some
// route takes only for some methods, when no route takes the others:
// without them such a request would fall to the not-found route (or find
// none) and get 404, as if the path did not exist. One per path or prefix,
// allowing the methods of every route with that very match. A path that a
// forwarding route without methods also covers (a prefix behind it, say)
// needs none: that route takes the other methods. Each is placed after the
// last route of its match and before the first direct answer that would
// take every method of that path (the model's closing not-found route);
// the result maps an index of routes to the 405 routes that go before it
// (len(routes): after the last).
func methodNotAllowedRoutes(routes []ir.Route) map[int][]ir.Route {
	type guarded struct {
		first   ir.Route
		last    int
		methods []string
		public  bool
	}
	var order []string
	byMatch := map[string]*guarded{}
	for i, r := range routes {
		if len(r.Methods) == 0 || r.Direct != nil {
			continue
		}
		key := matchKey(r)
		g, ok := byMatch[key]
		if !ok {
			g = &guarded{first: r, public: true}
			byMatch[key] = g
			order = append(order, key)
		}
		g.last = i
		for _, m := range r.Methods {
			if !slices.Contains(g.methods, m) {
				g.methods = append(g.methods, m)
			}
		}
		// The refusal asks for a token where any of the routes does.
		g.public = g.public && r.Public
	}
	out := map[int][]ir.Route{}
	for _, key := range order {
		g := byMatch[key]
		if slices.ContainsFunc(routes, func(r ir.Route) bool {
			return len(r.Methods) == 0 && r.Direct == nil && covers(r, g.first)
		}) {
			continue
		}
		at := len(routes)
		for k := g.last + 1; k < len(routes); k++ {
			if len(routes[k].Methods) == 0 && covers(routes[k], g.first) {
				at = k
				break
			}
		}
		slices.Sort(g.methods)
		out[at] = append(out[at], ir.Route{
			Name: g.first.Name + "-method-not-allowed", Path: g.first.Path, Prefix: g.first.Prefix,
			Public: g.public, Methods: g.methods,
			Direct: &ir.DirectResponse{Status: 405, ContentType: problem.ContentType},
		})
	}
	return out
}

// unknownMethodRoute answers 405 for a forwarding route r that takes
// every method, when the request's method is none the ingress routes
// (ir.RoutedMethods): the HTTP/1 codec lets any well-formed method
// through (allow_custom_methods), and without this route a QUERY or a
// FOO would reach the service, whose framework answers it as it likes.
// It goes right before r's own routes, with r's match, so that a path
// nothing serves still gets the not-found answer. Allow names the routed
// methods: which of them the service takes on this path is the service's
// to say (its own 405). A route that names its methods needs no such
// route: its 405 route (methodNotAllowedRoutes) takes any other method,
// custom ones included; neither does a direct answer, which takes every
// method.
func unknownMethodRoute(r ir.Route) (ir.Route, *route.Route, bool) {
	if len(r.Methods) > 0 || r.Direct != nil {
		return ir.Route{}, nil, false
	}
	guard := ir.Route{
		Name: r.Name + "-unknown-method", Path: r.Path, Prefix: r.Prefix,
		Public: r.Public, Methods: slices.Clone(ir.RoutedMethods),
		Direct: &ir.DirectResponse{Status: 405, ContentType: problem.ContentType},
	}
	er := methodNotAllowedRoute(guard)
	routed := methodMatcher(guard.Methods)
	routed.InvertMatch = true
	er.Match.Headers = append(er.Match.Headers, routed)
	return guard, er, true
}

// methodNotAllowedRoute is the Envoy route of one 405 route: any method,
// with Allow naming the route's methods.
func methodNotAllowedRoute(r ir.Route) *route.Route {
	er := directRoute(r, nil)
	er.ResponseHeadersToAdd = append(er.ResponseHeadersToAdd, setHeader("allow", strings.Join(r.Methods, ", ")))
	return er
}

// directRoute is the Envoy route of a direct answer, matching methods
// (nil: any).
func directRoute(r ir.Route, methods []string) *route.Route {
	er := baseRoute(r, methods)
	er.Action = &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{
		Status: r.Direct.Status,
		Body:   inline(r.Direct.Body),
	}}
	er.ResponseHeadersToAdd = []*core.HeaderValueOption{setHeader("content-type", r.Direct.ContentType)}
	return er
}

func matchKey(r ir.Route) string {
	if r.Path != "" {
		return "path:" + strings.TrimSuffix(r.Path, "/")
	}
	return "prefix:" + r.Prefix
}

// covers says whether every request path r2 matches is matched by r.
func covers(r, r2 ir.Route) bool {
	switch {
	case r.Prefix != "" && r2.Path != "":
		return strings.HasPrefix(r2.Path, r.Prefix)
	case r.Prefix != "":
		return strings.HasPrefix(r2.Prefix, r.Prefix)
	case r2.Path != "":
		return strings.TrimSuffix(r.Path, "/") == strings.TrimSuffix(r2.Path, "/")
	}
	return false
}
