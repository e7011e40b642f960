package translate_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/irbuild"
	"github.com/portico-mesh/portico/edge/controlplane/translate"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the current output")

// goldenCase is one input under testdata/in: an edge configuration (the
// default document when omitted, with overrides merged in) and a catalog.
type goldenCase struct {
	// Document replaces the default edge configuration when set.
	Document  json.RawMessage      `json:"document,omitempty"`
	Services  []irbuild.Service    `json:"services"`
	Listener  ir.Listener          `json:"listener"`
	RateLimit *ir.RateLimitService `json:"rateLimit,omitempty"`
}

// TestGolden translates each case under testdata/in and compares the model
// and the Envoy resources with testdata/out (go test -update rewrites them).
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			model, res := translateCase(t, in)
			compareGolden(t, filepath.Join("testdata/out", name+".ir.yaml"), toYAML(t, model))
			compareGolden(t, filepath.Join("testdata/out", name+".xds.yaml"), resourcesYAML(t, res))
			requireConsistent(t, res)
		})
	}
}

func translateCase(t *testing.T, path string) (*ir.Xds, *xdsresources.Set) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c goldenCase
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	docYAML := edgeconfig.Default()
	if len(c.Document) > 0 {
		docYAML = c.Document
	}
	doc, err := edgeconfig.Parse(docYAML)
	if err != nil {
		t.Fatalf("%s: document: %v", path, err)
	}
	model, err := irbuild.Build(irbuild.Inputs{
		Document:   doc,
		Listener:   c.Listener,
		Datacenter: "dc1",
		Identity: ir.Identity{
			CertPEM:     "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n",
			KeyPEM:      "-----BEGIN EC PRIVATE KEY-----\nKEY\n-----END EC PRIVATE KEY-----\n",
			RootsPEM:    []string{"-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n"},
			TrustDomain: "11111111-2222-3333-4444-555555555555.consul",
		},
		Services:  c.Services,
		Ingress:   "ingress",
		RateLimit: c.RateLimit,
	})
	if err != nil {
		t.Fatalf("%s: build: %v", path, err)
	}
	res, err := translate.Translate(model)
	if err != nil {
		t.Fatalf("%s: translate: %v", path, err)
	}
	return model, res
}

func toYAML(t *testing.T, v any) []byte {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// resourcesYAML renders the resources as protojson, read back into plain
// values so the YAML is stable (protojson's own spacing is not).
func resourcesYAML(t *testing.T, r *xdsresources.Set) []byte {
	t.Helper()
	byKind := map[string][]types.Resource{
		"listeners": r.Listeners, "routes": r.Routes, "clusters": r.Clusters,
		"endpoints": r.Endpoints, "secrets": r.Secrets, "rateLimitConfigs": r.RateLimitConfigs,
	}
	doc := map[string][]any{}
	for kind, list := range byKind {
		for _, res := range list {
			js, err := protojson.Marshal(res)
			if err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			var v any
			if err := json.Unmarshal(js, &v); err != nil {
				t.Fatal(err)
			}
			doc[kind] = append(doc[kind], v)
		}
	}
	return toYAML(t, doc)
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the output; diff with go test -update and git diff\n--- got:\n%s", path, got)
	}
}

// requireConsistent checks the snapshot the server would set: every
// cluster's endpoints and every listener's routes are present.
func requireConsistent(t *testing.T, r *xdsresources.Set) {
	t.Helper()
	snap, err := cachev3.NewSnapshot("golden", map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: r.Listeners,
		resourcev3.RouteType:    r.Routes,
		resourcev3.ClusterType:  r.Clusters,
		resourcev3.EndpointType: r.Endpoints,
		resourcev3.SecretType:   r.Secrets,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatalf("snapshot not consistent: %v", err)
	}
}
