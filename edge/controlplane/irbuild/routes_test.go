package irbuild

import (
	"slices"
	"testing"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
)

func TestForwardedPrefixIsWhatTheRewriteRemoved(t *testing.T) {
	tests := []struct {
		name string
		r    edgeconfig.Route
		want string
	}{
		{"prefix to root", edgeconfig.Route{Prefix: "/api/users/", Rewrite: "/"}, "/api/users"},
		{"prefix to its tail", edgeconfig.Route{Prefix: "/v2/products/", Rewrite: "/products/"}, "/v2"},
		{"prefix to its tail without slash", edgeconfig.Route{Prefix: "/v2/products", Rewrite: "/products"}, "/v2"},
		{"prefix elsewhere", edgeconfig.Route{Prefix: "/shop/", Rewrite: "/catalog/"}, ""},
		{"path to its tail", edgeconfig.Route{Path: "/api/users/login", Rewrite: "/login"}, "/api/users"},
		{"path elsewhere", edgeconfig.Route{Path: "/signin", Rewrite: "/login"}, ""},
		{"no rewrite", edgeconfig.Route{Prefix: "/orders/"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := forwardedPrefix(tc.r); got != tc.want {
				t.Fatalf("forwardedPrefix(%+v) = %q, want %q", tc.r, got, tc.want)
			}
		})
	}
}

func TestHideOperationalCoversEveryForwardingPrefixOnce(t *testing.T) {
	routes := []ir.Route{
		{Name: "read", Prefix: "/api/users/", Cluster: "users", Methods: []string{"GET"}},
		{Name: "write", Prefix: "/api/users/", Cluster: "users", Methods: []string{"POST"}},
		{Name: "bare", Prefix: "/products", Cluster: "products"},
		{Name: "exact", Path: "/api/users/login", Cluster: "users"},
		{Name: "direct", Prefix: "/static/", Direct: &ir.DirectResponse{Status: 200}},
	}
	var paths []string
	for _, r := range hideOperational(routes) {
		if r.Direct == nil || r.Direct.Status != 404 || r.Prefix != "" {
			t.Fatalf("%s is not an exact-path 404: %+v", r.Name, r)
		}
		paths = append(paths, r.Path)
	}
	want := []string{
		"/api/users/healthz", "/api/users/metrics", "/api/users/readyz",
		"/products/healthz", "/products/metrics", "/products/readyz",
	}
	if !slices.Equal(paths, want) {
		t.Fatalf("hidden %q, want %q", paths, want)
	}
}

func TestProxyRoutesReachEveryTargetButExcludedOnes(t *testing.T) {
	b := builder{
		in: Inputs{
			Document: edgeconfig.Document{
				Defaults: edgeconfig.Policy{Timeout: new(edgeconfig.Duration)},
				Routes:   []edgeconfig.Route{{Name: "orders", Prefix: "/orders/", Service: "orders"}},
				Proxy: edgeconfig.Proxy{
					Enabled: true,
					Aliases: map[string]string{"users_service": "users", "self": "ingress", "hidden": "consul"},
					Exclude: []string{"consul"},
				},
			},
			Ingress:  "ingress",
			Services: []Service{{Name: "users"}, {Name: "consul"}, {Name: "ingress"}},
		},
		clusters: map[string]bool{},
	}
	got := map[string]string{}
	for _, r := range b.proxyRoutes() {
		got[r.Prefix] = r.Cluster
		if r.Public || r.Rewrite != "/" || r.ForwardedPrefix+"/" != r.Prefix {
			t.Errorf("%s: want a private route rewritten to / with its prefix forwarded: %+v", r.Name, r)
		}
	}
	want := map[string]string{"/proxy/orders/": "orders", "/proxy/users/": "users", "/proxy/users_service/": "users"}
	if len(got) != len(want) {
		t.Fatalf("proxy routes %v, want %v", got, want)
	}
	for prefix, cluster := range want {
		if got[prefix] != cluster {
			t.Fatalf("proxy routes %v, want %v", got, want)
		}
	}
}

// The methods an operator may name on a route are exactly the ones the
// ingress forwards (any other gets the ingress's 405): edgeconfig
// validates its own list, since it does not import ir.
func TestRouteMethodsAreTheRoutedMethods(t *testing.T) {
	accepts := func(method string) bool {
		doc, err := edgeconfig.Parse(edgeconfig.Default())
		if err != nil {
			t.Fatal(err)
		}
		doc.Routes[0].Methods = []string{method}
		return doc.Validate() == nil
	}
	for _, m := range ir.RoutedMethods {
		if !accepts(m) {
			t.Errorf("edgeconfig refuses %s, which the ingress routes", m)
		}
	}
	for _, m := range []string{"QUERY", "TRACE", "CONNECT", "PROPFIND", "FOO"} {
		if slices.Contains(ir.RoutedMethods, m) {
			t.Fatalf("%s is routed; pick another unrouted method", m)
		}
		if accepts(m) {
			t.Errorf("edgeconfig accepts %s, which the ingress answers 405", m)
		}
	}
}
