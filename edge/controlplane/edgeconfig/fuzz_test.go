package edgeconfig_test

import (
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/irbuild"
	"github.com/portico-mesh/portico/edge/controlplane/translate"
)

// FuzzParse: any input either fails, with the same message every time
// (the reasons are written to KV and logs), or yields a document that
// validates, survives a round trip unchanged, and that the control plane
// can build and translate against a small catalog. An accepted document
// the control plane then refuses would leave the ingress on its previous
// configuration with a reason no operator was told at write time.
// It is an external test so that it can reach irbuild and translate,
// which import this package. testdata/fuzz/FuzzParse holds the seeds and
// every input that once failed.
func FuzzParse(f *testing.F) {
	f.Add(edgeconfig.Default())
	f.Add([]byte(`version: 1`))
	f.Add([]byte(`{"version":1,"routes":[{"name":"a","path":"/a","service":"a"}]}`))
	f.Add([]byte("routes:\n  - name: x\n    prefix: /x/\n    service: x\n    rateLimit: {local: {requests: 1, per: 1s, burst: 1}}\n"))
	f.Add([]byte(string(edgeconfig.Default()) + "\ntracing: {collector: \"jaeger:4317\", samplingPercent: 0.25}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := edgeconfig.Parse(data)
		if err != nil {
			// Several times: map order, the usual culprit, varies per run.
			for range 3 {
				if _, again := edgeconfig.Parse(data); again == nil || again.Error() != err.Error() {
					t.Fatalf("the same input was refused with %q, then with %v", err, again)
				}
			}
			return
		}
		if err := doc.Validate(); err != nil {
			t.Fatalf("Parse returned a document that does not validate: %v", err)
		}
		out, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := edgeconfig.Parse(out)
		if err != nil {
			t.Fatalf("a valid document did not survive a round trip: %v\n%s", err, out)
		}
		if diff := cmp.Diff(doc, again); diff != "" {
			t.Fatalf("round trip changed the document (-first +second):\n%s", diff)
		}
		model, err := irbuild.Build(fuzzInputs(doc))
		if err != nil {
			t.Fatalf("an accepted document does not build: %v\n%s", err, out)
		}
		res, err := translate.Translate(model)
		if err != nil {
			t.Fatalf("an accepted document does not translate: %v\n%s", err, out)
		}
		// Envoy checks every resource against its proto constraints and
		// refuses the whole update when one fails.
		for _, list := range [][]types.Resource{res.Listeners, res.Routes, res.Clusters, res.Endpoints, res.Secrets, res.RateLimitConfigs} {
			for _, r := range list {
				if v, ok := r.(interface{ ValidateAll() error }); ok {
					if err := v.ValidateAll(); err != nil {
						t.Fatalf("an accepted document gives a resource Envoy refuses: %v\n%s", err, out)
					}
				}
			}
		}
	})
}

// fuzzInputs is a fixed catalog: the services of the default document,
// one reachable only through /proxy/, and the ingress itself.
func fuzzInputs(doc edgeconfig.Document) irbuild.Inputs {
	endpoint := func(port uint32) []ir.Endpoint { return []ir.Endpoint{{Address: "127.0.0.1", Port: port}} }
	return irbuild.Inputs{
		Document:   doc,
		Listener:   ir.Listener{Address: "127.0.0.1", Port: 5000},
		Datacenter: "dc1",
		Identity: ir.Identity{
			CertPEM:     "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n",
			KeyPEM:      "-----BEGIN EC PRIVATE KEY-----\nKEY\n-----END EC PRIVATE KEY-----\n",
			RootsPEM:    []string{"-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n"},
			TrustDomain: "11111111-2222-3333-4444-555555555555.consul",
		},
		Services: []irbuild.Service{
			{Name: "users", Endpoints: endpoint(21001)},
			{Name: "products", Endpoints: endpoint(21002)},
			{Name: "edge", Endpoints: endpoint(21003)},
			{Name: "orders"},
			{Name: "ingress", Endpoints: endpoint(5000)},
		},
		Ingress:   "ingress",
		RateLimit: &ir.RateLimitService{Address: "127.0.0.1", Port: 8081, Domain: "portico", FailOpen: true},
		// Tracing on, so every document's tracer is translated too.
		TracingCollector: "127.0.0.1:4317",
	}
}

// TestAcceptedDocumentsBuild: the fuzzer's finds. A route named like one
// the control plane adds, or a proxy alias differing from a service only
// in case, was accepted, and every build then failed on duplicate route
// names while the status key said the document was accepted.
func TestAcceptedDocumentsBuild(t *testing.T) {
	base := string(edgeconfig.Default())
	renamed := func(name string) string { return strings.Replace(base, "name: users-jwks", "name: "+name, 1) }
	for _, name := range []string{"docs", "openapi", "dashboard", "dashboard-assets", "not-found", "ingress-health",
		"products-cached", "proxy-users", "hide-users-metrics"} {
		if _, err := edgeconfig.Parse([]byte(renamed(name))); err == nil || !strings.Contains(err.Error(), "routes[2].name: is reserved") {
			t.Errorf("route name %q: got %v, want it refused as reserved", name, err)
		}
	}
	for _, doc := range []string{
		strings.Replace(base, "users_service: users", "Users: users", 1),
		strings.Replace(base, "service: products\n", "service: Products\n", 1),
		renamed("cached-products"),
	} {
		parsed, err := edgeconfig.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		model, err := irbuild.Build(fuzzInputs(parsed))
		if err != nil {
			t.Fatalf("accepted, then not built: %v", err)
		}
		if _, err := translate.Translate(model); err != nil {
			t.Fatalf("accepted, then not translated: %v", err)
		}
	}
}

// TestAliasErrorsComeInOneOrder: the aliases were validated in map order,
// so a document with several bad ones was refused with a different text
// each time.
func TestAliasErrorsComeInOneOrder(t *testing.T) {
	doc := []byte(strings.Replace(string(edgeconfig.Default()), "users_service: users",
		"users_service: users\n    \"a b\": users\n    \"c d\": users\n    \"e f\": users\n    \"g h\": users", 1))
	_, first := edgeconfig.Parse(doc)
	if first == nil || !strings.Contains(first.Error(), "proxy.aliases.a b: alias and target must be service names; proxy.aliases.c d") {
		t.Fatalf("bad aliases: got %v", first)
	}
	for range 50 {
		if _, err := edgeconfig.Parse(doc); err == nil || err.Error() != first.Error() {
			t.Fatalf("refused with %q, then %v", first, err)
		}
	}
}
