package ir_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
)

// valid is the smallest consistent model: one route to one cluster, with
// auth, an identity and the rate-limit service.
func valid() *ir.Xds {
	return &ir.Xds{
		Listener: ir.Listener{Address: "127.0.0.1", Port: 5000},
		Auth:     &ir.Auth{Issuer: "i", Audiences: []string{"a"}, JWKSCluster: "users", JWKSPath: "/jwks"},
		Routes: []ir.Route{
			{Name: "users", Prefix: "/", Cluster: "users", GlobalRateLimits: []ir.GlobalRateLimit{{Key: ir.ByClient, Requests: 1, Unit: "minute"}}},
			{Name: "health", Path: "/healthz", Direct: &ir.DirectResponse{Status: 200}},
		},
		Clusters:         []ir.Cluster{{Name: "users"}},
		Identity:         ir.Identity{CertPEM: "c", KeyPEM: "k", RootsPEM: []string{"r"}},
		RateLimitService: &ir.RateLimitService{Address: "127.0.0.1", Port: 8081, Domain: "d"},
		Tracing:          &ir.Tracing{Address: "127.0.0.1", Port: 4317, ServiceName: "ingress", SamplingPercent: 1},
	}
}

func TestValidModel(t *testing.T) {
	if err := valid().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestEachInconsistencyHasItsSentinel breaks the valid model one way at a
// time and requires the matching sentinel, and no other.
func TestEachInconsistencyHasItsSentinel(t *testing.T) {
	sentinels := []error{
		ir.ErrNoListener, ir.ErrRouteMatch, ir.ErrRouteAction, ir.ErrUnknownCluster, ir.ErrDuplicateRoute,
		ir.ErrDuplicateCluster, ir.ErrNoIdentity, ir.ErrNoAuthCluster, ir.ErrGlobalLimits, ir.ErrTracing,
	}
	tests := []struct {
		name   string
		mutate func(x *ir.Xds)
		want   error
	}{
		{"no listener port", func(x *ir.Xds) { x.Listener.Port = 0 }, ir.ErrNoListener},
		{"path and prefix", func(x *ir.Xds) { x.Routes[0].Path = "/x" }, ir.ErrRouteMatch},
		{"neither path nor prefix", func(x *ir.Xds) { x.Routes[1].Path = "" }, ir.ErrRouteMatch},
		{"cluster and direct answer", func(x *ir.Xds) { x.Routes[0].Direct = &ir.DirectResponse{Status: 204} }, ir.ErrRouteAction},
		{"no action", func(x *ir.Xds) { x.Routes[1].Direct = nil }, ir.ErrRouteAction},
		{"unknown cluster", func(x *ir.Xds) { x.Routes[0].Cluster = "orders" }, ir.ErrUnknownCluster},
		{"duplicate route", func(x *ir.Xds) { x.Routes[1].Name = "users" }, ir.ErrDuplicateRoute},
		{"duplicate cluster", func(x *ir.Xds) { x.Clusters = append(x.Clusters, ir.Cluster{Name: "users"}) }, ir.ErrDuplicateCluster},
		{"no roots", func(x *ir.Xds) { x.Identity.RootsPEM = nil }, ir.ErrNoIdentity},
		{"no key", func(x *ir.Xds) { x.Identity.KeyPEM = "" }, ir.ErrNoIdentity},
		{"jwks cluster missing", func(x *ir.Xds) { x.Auth.JWKSCluster = "keys" }, ir.ErrNoAuthCluster},
		{"global limits without the service", func(x *ir.Xds) { x.RateLimitService = nil }, ir.ErrGlobalLimits},
		{"tracing without a collector port", func(x *ir.Xds) { x.Tracing.Port = 0 }, ir.ErrTracing},
		{"tracing without a service name", func(x *ir.Xds) { x.Tracing.ServiceName = "" }, ir.ErrTracing},
		{"sampling above 100 percent", func(x *ir.Xds) { x.Tracing.SamplingPercent = 100.5 }, ir.ErrTracing},
		{"negative sampling", func(x *ir.Xds) { x.Tracing.SamplingPercent = -1 }, ir.ErrTracing},
		{"sampling not a number", func(x *ir.Xds) { x.Tracing.SamplingPercent = math.NaN() }, ir.ErrTracing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := valid()
			tc.mutate(x)
			err := x.Validate()
			for _, s := range sentinels {
				if got := errors.Is(err, s); got != errors.Is(tc.want, s) {
					t.Fatalf("errors.Is(%v, %v) = %v", err, s, got)
				}
			}
		})
	}
}

func TestNoClustersNeedNoIdentity(t *testing.T) {
	x := &ir.Xds{
		Listener: ir.Listener{Port: 5000},
		Routes:   []ir.Route{{Name: "not-found", Prefix: "/", Direct: &ir.DirectResponse{Status: 404}}},
	}
	if err := x.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestRetriesAllowedOnlyWithAnIdempotentMethod(t *testing.T) {
	for methods, want := range map[string]bool{"": true, "GET": true, "POST,OPTIONS": true, "POST": false, "PUT,DELETE": false} {
		r := ir.Route{}
		if methods != "" {
			r.Methods = strings.Split(methods, ",")
		}
		if got := r.RetriesAllowed(); got != want {
			t.Errorf("RetriesAllowed(%q) = %v, want %v", methods, got, want)
		}
	}
}
