package translate_test

import (
	"encoding/json"
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
	"github.com/portico-mesh/portico/edge/controlplane/internal/golden"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/irbuild"
	"github.com/portico-mesh/portico/edge/controlplane/translate"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
)

// TestTranslateGolden translates each model under testdata/in (IR as
// YAML, unknown fields rejected) and compares the resources with
// testdata/out/<case>.<type>.yaml, one file per xDS type the case has, so
// a change to one route touches the routes file of the cases it concerns.
// Cases named invalid-* must be refused; their sorted error messages are
// compared with <case>.errors.txt. go test -update rewrites the outputs.
func TestTranslateGolden(t *testing.T) {
	var written []string
	for _, name := range golden.Cases(t, "testdata/in") {
		model := readModel(t, filepath.Join("testdata/in", name+".yaml"))
		if strings.HasPrefix(name, "invalid-") {
			written = append(written, name+".errors.txt")
			t.Run(name, func(t *testing.T) {
				if _, err := translate.Translate(model); err == nil {
					t.Fatal("an invalid model was translated")
				} else {
					golden.Compare(t, filepath.Join("testdata/out", name+".errors.txt"), golden.Errors(err))
				}
			})
			continue
		}
		written = append(written, requireResources(t, name, model)...)
	}
	written = append(written, requireResources(t, "default-document", defaultDocumentModel(t))...)
	golden.RequireOnly(t, "testdata/out", written)
}

// requireResources translates model in a subtest named name, compares each
// type's resources with its golden file and checks the snapshot is
// consistent; it returns the files the case owns.
func requireResources(t *testing.T, name string, model *ir.Xds) []string {
	t.Helper()
	var files []string
	t.Run(name, func(t *testing.T) {
		res, err := translate.Translate(model)
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range byType(res) {
			if len(kind.resources) == 0 {
				continue
			}
			file := name + "." + kind.name + ".yaml"
			files = append(files, file)
			golden.Compare(t, filepath.Join("testdata/out", file), resourcesYAML(t, kind.resources))
		}
		requireConsistent(t, res)
	})
	return files
}

type typedResources struct {
	name      string
	resources []types.Resource
}

func byType(r *xdsresources.Set) []typedResources {
	return []typedResources{
		{"listeners", r.Listeners}, {"routes", r.Routes}, {"clusters", r.Clusters},
		{"endpoints", r.Endpoints}, {"secrets", r.Secrets}, {"ratelimitconfigs", r.RateLimitConfigs},
	}
}

func readModel(t *testing.T, path string) *ir.Xds {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var x ir.Xds
	if err := yaml.UnmarshalStrict(raw, &x); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &x
}

// defaultDocumentModel is the integration case: the shipped document,
// built against a catalog with every service it names plus one reached
// only through /proxy/, with global limits on.
func defaultDocumentModel(t *testing.T) *ir.Xds {
	t.Helper()
	doc, err := edgeconfig.Parse(edgeconfig.Default())
	if err != nil {
		t.Fatal(err)
	}
	model, err := irbuild.Build(irbuild.Inputs{
		Document:   doc,
		Listener:   ir.Listener{Address: "0.0.0.0", Port: 5000},
		Datacenter: "dc1",
		Identity: ir.Identity{
			CertPEM:     "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n",
			KeyPEM:      "-----BEGIN EC PRIVATE KEY-----\nKEY\n-----END EC PRIVATE KEY-----\n",
			RootsPEM:    []string{"-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n"},
			TrustDomain: "example.consul",
		},
		Services: []irbuild.Service{
			{Name: "users", Endpoints: []ir.Endpoint{{Address: "127.0.0.1", Port: 21001}}},
			{Name: "products", Endpoints: []ir.Endpoint{{Address: "127.0.0.1", Port: 21002}}},
			{Name: "edge", Endpoints: []ir.Endpoint{{Address: "127.0.0.1", Port: 21004}}},
			{Name: "orders"},
			{Name: "ingress", Endpoints: []ir.Endpoint{{Address: "127.0.0.1", Port: 5000}}},
		},
		Ingress:   "ingress",
		RateLimit: &ir.RateLimitService{Address: "127.0.0.1", Port: 8081, Domain: "portico", FailOpen: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return model
}

// resourcesYAML renders resources as protojson, read back into plain
// values so the YAML is stable (protojson's own spacing is not).
func resourcesYAML(t *testing.T, list []types.Resource) []byte {
	t.Helper()
	out := make([]any, 0, len(list))
	for _, res := range list {
		js, err := protojson.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return golden.YAML(t, out)
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
