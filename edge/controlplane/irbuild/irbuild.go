// Package irbuild resolves the edge configuration document against the
// catalog into the intermediate model: which routes exist, which mesh
// services they reach, and with what policies. It is pure: the same inputs
// always give the same model, with every list in a stable order.
package irbuild

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/services/platform/contract"
)

// ConnectTimeout bounds TCP and TLS set-up to a sidecar.
const ConnectTimeout = 2 * time.Second

// Inputs is everything the model depends on.
type Inputs struct {
	Document edgeconfig.Document
	Listener ir.Listener
	// Datacenter and Identity.TrustDomain name the mesh the ingress is in.
	Datacenter string
	Identity   ir.Identity
	// Services are the catalog's Connect services.
	Services []Service
	// Ingress is the ingress's own service name, never a route target.
	Ingress string
	// RateLimit is the global rate-limit service; nil disables global limits.
	RateLimit *ir.RateLimitService
	// TracingCollector is the OTLP/gRPC collector's host:port the control
	// plane was started with; the document's tracing.collector wins over
	// it, and with neither the ingress does not trace.
	TracingCollector string
}

// Service is a catalog service and its healthy sidecar endpoints.
type Service struct {
	Name      string
	Endpoints []ir.Endpoint
}

// Build returns the validated model.
func Build(in Inputs) (*ir.Xds, error) {
	doc := in.Document
	b := builder{in: in, clusters: map[string]bool{}}
	x := &ir.Xds{
		Listener:         in.Listener,
		Identity:         in.Identity,
		RateLimitService: in.RateLimit,
	}
	x.Auth = &ir.Auth{
		Issuer:      doc.Auth.Issuer,
		Audiences:   slices.Clone(doc.Auth.Audiences),
		JWKSCluster: b.use(doc.Auth.JWKS.Service),
		JWKSPath:    doc.Auth.JWKS.Path,
		Refresh:     doc.Auth.JWKS.Refresh.D(),
		ClockSkew:   doc.Auth.ClockSkew.D(),
	}

	// First match wins: the ingress's own health answer, then the 404s
	// that hide operational endpoints (they must precede the routes that
	// would forward them), the forwarding routes, and a 404 for the rest.
	forwarding := b.forwardingRoutes()
	x.Routes = slices.Concat(
		[]ir.Route{healthRoute()},
		hideOperational(forwarding),
		forwarding,
		[]ir.Route{notFoundRoute()},
	)
	x.Clusters = b.clusterList()
	tracing, err := buildTracing(doc.Tracing, in.TracingCollector, in.Ingress)
	if err != nil {
		return nil, err
	}
	x.Tracing = tracing

	if err := x.Validate(); err != nil {
		return nil, err
	}
	return x, nil
}

// forwardingRoutes are the routes that send requests to services: the
// document's, then the edge's docs and dashboard, then /proxy/.
func (b *builder) forwardingRoutes() []ir.Route {
	doc := b.in.Document
	var routes []ir.Route
	for _, r := range doc.Routes {
		routes = append(routes, b.documentRoutes(r)...)
	}
	if doc.Edge.Docs {
		routes = append(routes, b.docsRoutes()...)
	}
	if doc.Edge.Dashboard {
		routes = append(routes, b.dashboardRoutes()...)
	}
	if doc.Proxy.Enabled {
		routes = append(routes, b.proxyRoutes()...)
	}
	return routes
}

type builder struct {
	in       Inputs
	clusters map[string]bool // services some route or the auth uses
}

// use records that a service is reached and returns its cluster name.
func (b *builder) use(service string) string {
	b.clusters[service] = true
	return service
}

func healthRoute() ir.Route {
	return ir.Route{
		Name: "ingress-health", Path: "/healthz", Public: true,
		Direct: &ir.DirectResponse{Status: 200, ContentType: "application/json", Body: `{"status":"ok"}`},
	}
}

// notFoundRoute ends the table: whatever no route claimed is answered here,
// so an unknown path never reaches a service.
func notFoundRoute() ir.Route {
	return ir.Route{
		Name: "not-found", Prefix: "/", Public: true,
		Direct: &ir.DirectResponse{
			Status: 404,
			// The ingress's local-reply mapper wraps it in a problem document.
			ContentType: "application/problem+json",
			Body:        "no route matches this path",
		},
	}
}

// operationalPaths are every service's own endpoints for the platform:
// metrics, health and readiness are for Prometheus and Consul inside the
// mesh, never for clients.
var operationalPaths = []string{"healthz", "metrics", "readyz"}

// hideOperational answers 404 for the operational endpoints under every
// forwarding prefix, ahead of the routes that would forward them.
func hideOperational(routes []ir.Route) []ir.Route {
	var out []ir.Route
	seen := map[string]bool{}
	for _, r := range routes {
		if r.Prefix == "" || r.Cluster == "" || seen[r.Prefix] {
			continue
		}
		seen[r.Prefix] = true
		for _, p := range operationalPaths {
			nf := notFoundRoute()
			nf.Name = "hide-" + r.Name + "-" + p
			nf.Prefix, nf.Path = "", strings.TrimSuffix(r.Prefix, "/")+"/"+p
			out = append(out, nf)
		}
	}
	return out
}

// documentRoutes turns one configured route into model routes. A cached
// route becomes two: its reads go to the edge service, the rest straight
// to the service.
func (b *builder) documentRoutes(r edgeconfig.Route) []ir.Route {
	policy := merge(b.in.Document.Defaults, r.Policy)
	base := ir.Route{
		Name:             r.Name,
		Path:             r.Path,
		Prefix:           r.Prefix,
		Methods:          slices.Clone(r.Methods),
		Cluster:          b.use(r.Service),
		Rewrite:          r.Rewrite,
		ForwardedPrefix:  forwardedPrefix(r),
		Public:           r.Public,
		Timeout:          policy.Timeout.D(),
		RetryKeyedWrites: r.IdempotencyKeys,
	}
	applyPolicy(&base, policy, b.in.RateLimit != nil)
	edge := b.in.Document.Edge.Service
	if !r.Cache || edge == "" {
		return []ir.Route{base}
	}
	reads := []string{"GET", "HEAD"}
	if len(r.Methods) > 0 {
		reads = slices.DeleteFunc(slices.Clone(r.Methods), func(m string) bool { return m != "GET" && m != "HEAD" })
	}
	if len(reads) == 0 {
		return []ir.Route{base}
	}
	cached := base
	cached.Name = r.Name + "-cached"
	cached.Methods = reads
	cached.Cluster = b.use(edge)
	cached.SetHeaders = map[string]string{strings.ToLower(contract.HeaderUpstream): r.Service}
	return []ir.Route{cached, base}
}

// forwardedPrefix is what the rewrite takes off the front of the path.
func forwardedPrefix(r edgeconfig.Route) string {
	if r.Rewrite == "" {
		return ""
	}
	matched := r.Path + r.Prefix
	if r.Path != "" {
		// /api/users/login -> /login removes /api/users.
		if trimmed, ok := strings.CutSuffix(matched, r.Rewrite); ok {
			return trimmed
		}
		return ""
	}
	// /v2/products/ -> /products/ removes /v2; /api/users/ -> / removes
	// /api/users. A rewrite that is not the prefix's tail removes nothing
	// a service could put back in front of its own paths.
	if trimmed, ok := strings.CutSuffix(strings.TrimSuffix(matched, "/"), strings.TrimSuffix(r.Rewrite, "/")); ok {
		return trimmed
	}
	return ""
}

// docsRoutes send the merged API documentation to the edge, with the
// document's default timeout; they are public reads without retries or
// limits of their own.
func (b *builder) docsRoutes() []ir.Route {
	return []ir.Route{
		b.edgeRead("docs", "", "/docs"),
		b.edgeRead("openapi", "/openapi.json", ""),
	}
}

// dashboardRoutes send the dashboard page and its files to the edge. The
// page is public; the API calls it makes carry the signed-in user's token.
func (b *builder) dashboardRoutes() []ir.Route {
	return []ir.Route{
		b.edgeRead("dashboard", "/", ""),
		b.edgeRead("dashboard-assets", "", "/web/"),
	}
}

// edgeRead is a public GET/HEAD route to the edge service itself.
func (b *builder) edgeRead(name, path, prefix string) ir.Route {
	return ir.Route{
		Name: name, Path: path, Prefix: prefix,
		Cluster: b.use(b.in.Document.Edge.Service),
		Public:  true,
		Methods: []string{"GET", "HEAD"},
		Timeout: b.in.Document.Defaults.Timeout.D(),
	}
}

// proxyRoutes give /proxy/<service>/ for every catalog service and alias.
// They always need a token, whatever the service's own routes allow.
func (b *builder) proxyRoutes() []ir.Route {
	doc := b.in.Document
	excluded := func(name string) bool {
		return name == b.in.Ingress || slices.Contains(doc.Proxy.Exclude, name)
	}
	// Every service the catalog has or a route names: /proxy/ for a named
	// service does not come and go with its last instance.
	targets := map[string]string{} // path segment -> service
	for _, s := range b.in.Services {
		if !excluded(s.Name) {
			targets[s.Name] = s.Name
		}
	}
	for _, r := range doc.Routes {
		if !excluded(r.Service) {
			targets[r.Service] = r.Service
		}
	}
	for alias, target := range doc.Proxy.Aliases {
		if !excluded(target) {
			targets[alias] = target
		}
	}
	policy := merge(doc.Defaults, edgeconfig.Policy{})
	routes := make([]ir.Route, 0, len(targets))
	for _, segment := range slices.Sorted(maps.Keys(targets)) {
		r := ir.Route{
			// The segment as it is: lower-cased, "Users" and "users" would
			// give two routes of one name and the model would not build.
			Name:            "proxy-" + segment,
			Prefix:          "/proxy/" + segment + "/",
			Cluster:         b.use(targets[segment]),
			Rewrite:         "/",
			ForwardedPrefix: "/proxy/" + segment,
			Timeout:         policy.Timeout.D(),
		}
		applyPolicy(&r, policy, b.in.RateLimit != nil)
		routes = append(routes, r)
	}
	return routes
}

// clusterList lists a cluster for every catalog service and every service a
// route names, sorted; a named service absent from the catalog gets a
// cluster without endpoints, so its routes answer 503 until it appears.
func (b *builder) clusterList() []ir.Cluster {
	endpoints := map[string][]ir.Endpoint{}
	for _, s := range b.in.Services {
		if s.Name == b.in.Ingress {
			continue
		}
		endpoints[s.Name] = s.Endpoints
		b.clusters[s.Name] = true
	}
	d := b.in.Document.Defaults
	out := make([]ir.Cluster, 0, len(b.clusters))
	for _, name := range slices.Sorted(maps.Keys(b.clusters)) {
		eps := slices.Clone(endpoints[name])
		slices.SortFunc(eps, func(a, b ir.Endpoint) int {
			return strings.Compare(fmt.Sprintf("%s:%05d", a.Address, a.Port), fmt.Sprintf("%s:%05d", b.Address, b.Port))
		})
		out = append(out, ir.Cluster{
			Name:           name,
			SNI:            fmt.Sprintf("%s.default.%s.internal.%s", name, b.in.Datacenter, b.in.Identity.TrustDomain),
			SpiffeID:       fmt.Sprintf("spiffe://%s/ns/default/dc/%s/svc/%s", b.in.Identity.TrustDomain, b.in.Datacenter, name),
			Endpoints:      eps,
			ConnectTimeout: ConnectTimeout,
			Outlier: ir.Outlier{
				Consecutive5xx:           d.OutlierDetection.Consecutive5xx,
				ConsecutiveGatewayErrors: d.OutlierDetection.ConsecutiveGatewayErrors,
				Interval:                 d.OutlierDetection.Interval.D(),
				BaseEjectionTime:         d.OutlierDetection.BaseEjectionTime.D(),
				MaxEjectionPercent:       d.OutlierDetection.MaxEjectionPercent,
			},
			CircuitBreaker: ir.CircuitBreaker{
				MaxConnections:     d.CircuitBreaker.MaxConnections,
				MaxPendingRequests: d.CircuitBreaker.MaxPendingRequests,
				MaxRequests:        d.CircuitBreaker.MaxRequests,
			},
			RetryBudgetPercent: d.Retries.BudgetPercent,
		})
	}
	return out
}
