package ir

import (
	"errors"
	"fmt"
	"slices"
)

// Sentinel errors of an inconsistent model.
var (
	ErrNoListener       = errors.New("ir: listener port is zero")
	ErrRouteMatch       = errors.New("ir: route needs exactly one of path and prefix")
	ErrRouteAction      = errors.New("ir: route needs exactly one of cluster and direct response")
	ErrUnknownCluster   = errors.New("ir: route sends to a cluster that does not exist")
	ErrDuplicateRoute   = errors.New("ir: duplicate route name")
	ErrDuplicateCluster = errors.New("ir: duplicate cluster name")
	ErrNoIdentity       = errors.New("ir: clusters need the ingress identity (leaf certificate, key and roots)")
	ErrNoAuthCluster    = errors.New("ir: auth needs the JWKS cluster")
	ErrGlobalLimits     = errors.New("ir: global rate limits need the rate-limit service")
	ErrTracing          = errors.New("ir: tracing needs a collector address and port, a service name and a sampling percent between 0 and 100")
)

// Validate checks that the model is complete and consistent; the
// translator relies on it.
func (x *Xds) Validate() error {
	var errs []error
	if x.Listener.Port == 0 {
		errs = append(errs, ErrNoListener)
	}
	clusters := map[string]bool{}
	for _, c := range x.Clusters {
		if clusters[c.Name] {
			errs = append(errs, fmt.Errorf("%w: %s", ErrDuplicateCluster, c.Name))
		}
		clusters[c.Name] = true
	}
	if len(x.Clusters) > 0 && (x.Identity.CertPEM == "" || x.Identity.KeyPEM == "" || len(x.Identity.RootsPEM) == 0) {
		errs = append(errs, ErrNoIdentity)
	}
	if x.Auth != nil && !clusters[x.Auth.JWKSCluster] {
		errs = append(errs, fmt.Errorf("%w: %s", ErrNoAuthCluster, x.Auth.JWKSCluster))
	}
	if t := x.Tracing; t != nil && (t.Address == "" || t.Port == 0 || t.ServiceName == "" ||
		!(t.SamplingPercent >= 0 && t.SamplingPercent <= 100)) {
		errs = append(errs, ErrTracing)
	}
	routes := map[string]bool{}
	for _, r := range x.Routes {
		if routes[r.Name] {
			errs = append(errs, fmt.Errorf("%w: %s", ErrDuplicateRoute, r.Name))
		}
		routes[r.Name] = true
		if (r.Path == "") == (r.Prefix == "") {
			errs = append(errs, fmt.Errorf("%w: %s", ErrRouteMatch, r.Name))
		}
		if (r.Cluster == "") == (r.Direct == nil) {
			errs = append(errs, fmt.Errorf("%w: %s", ErrRouteAction, r.Name))
		}
		if r.Cluster != "" && !clusters[r.Cluster] {
			errs = append(errs, fmt.Errorf("%w: %s -> %s", ErrUnknownCluster, r.Name, r.Cluster))
		}
		if len(r.GlobalRateLimits) > 0 && x.RateLimitService == nil {
			errs = append(errs, fmt.Errorf("%w: %s", ErrGlobalLimits, r.Name))
		}
	}
	return errors.Join(errs...)
}

// RoutedMethods are the methods the ingress forwards: the ones a route
// may name (edgeconfig validates the same list). Any other method (QUERY,
// WebDAV's, an invented one) is answered 405 by the ingress itself.
var RoutedMethods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}

// IdempotentMethods are the methods the ingress may retry.
var IdempotentMethods = []string{"GET", "HEAD", "OPTIONS"}

// RetriesAllowed reports whether the route matches any idempotent method.
func (r Route) RetriesAllowed() bool {
	if len(r.Methods) == 0 {
		return true
	}
	return slices.ContainsFunc(r.Methods, func(m string) bool { return slices.Contains(IdempotentMethods, m) })
}
