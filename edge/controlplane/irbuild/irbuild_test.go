package irbuild_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/internal/golden"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/irbuild"
)

// buildCase is one input under testdata/in: the parts of an edge
// configuration that the case is about, and a catalog.
type buildCase struct {
	// Document is merged over testdata/base-document.yaml: objects merge
	// field by field, lists and values replace (RFC 7386), so a case
	// states only its feature.
	Document json.RawMessage `json:"document,omitempty"`
	// DefaultDocument starts from the document shipped in edgeconfig
	// instead: the one integration case.
	DefaultDocument bool              `json:"defaultDocument,omitempty"`
	Services        []irbuild.Service `json:"services"`
	// Listener defaults to 127.0.0.1:5000.
	Listener  *ir.Listener         `json:"listener,omitempty"`
	RateLimit *ir.RateLimitService `json:"rateLimit,omitempty"`
	// TracingCollector is the control plane's collector address.
	TracingCollector string `json:"tracingCollector,omitempty"`
	// NoIdentity leaves out the leaf certificate and roots.
	NoIdentity bool `json:"noIdentity,omitempty"`
}

// TestBuildGolden builds the model of each case under testdata/in and
// compares it with testdata/out/<case>.ir.yaml. Cases named invalid-* must
// fail; their sorted error messages are compared with <case>.errors.txt.
// go test -update rewrites the outputs.
func TestBuildGolden(t *testing.T) {
	var written []string
	for _, name := range golden.Cases(t, "testdata/in") {
		invalid := strings.HasPrefix(name, "invalid-")
		out := name + ".ir.yaml"
		if invalid {
			out = name + ".errors.txt"
		}
		written = append(written, out)
		t.Run(name, func(t *testing.T) {
			model, err := buildFrom(t, filepath.Join("testdata/in", name+".yaml"))
			switch {
			case invalid && err == nil:
				t.Fatal("an invalid case was built")
			case invalid:
				golden.Compare(t, filepath.Join("testdata/out", out), golden.Errors(err))
			case err != nil:
				t.Fatal(err)
			default:
				golden.Compare(t, filepath.Join("testdata/out", out), golden.YAML(t, model))
			}
		})
	}
	golden.RequireOnly(t, "testdata/out", written)
}

// testIdentity is a fixed identity, so outputs hold no real key material
// and never change.
func testIdentity() ir.Identity {
	return ir.Identity{
		CertPEM:     "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n",
		KeyPEM:      "-----BEGIN EC PRIVATE KEY-----\nKEY\n-----END EC PRIVATE KEY-----\n",
		RootsPEM:    []string{"-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n"},
		TrustDomain: "11111111-2222-3333-4444-555555555555.consul",
	}
}

// buildFrom parses and builds one case; a document that fails validation
// fails the build like any inconsistent input.
func buildFrom(t *testing.T, path string) (*ir.Xds, error) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c buildCase
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	doc, err := edgeconfig.Parse(caseDocument(t, c))
	if err != nil {
		return nil, err
	}
	in := irbuild.Inputs{
		Document:   doc,
		Listener:   ir.Listener{Address: "127.0.0.1", Port: 5000},
		Datacenter: "dc1",
		Identity:   testIdentity(),
		Services:   c.Services,
		Ingress:    "ingress",
		RateLimit:  c.RateLimit,
		// The control plane's collector, as its command passes it.
		TracingCollector: c.TracingCollector,
	}
	if c.Listener != nil {
		in.Listener = *c.Listener
	}
	if c.NoIdentity {
		in.Identity = ir.Identity{TrustDomain: in.Identity.TrustDomain}
	}
	return irbuild.Build(in)
}

func caseDocument(t *testing.T, c buildCase) []byte {
	t.Helper()
	if c.DefaultDocument {
		return edgeconfig.Default()
	}
	base, err := os.ReadFile("testdata/base-document.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Document) == 0 {
		return base
	}
	var doc, patch any
	if err := yaml.Unmarshal(base, &doc); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(c.Document, &patch); err != nil {
		t.Fatal(err)
	}
	return golden.YAML(t, mergePatch(doc, patch))
}

// mergePatch applies an RFC 7386 merge patch: objects merge, null
// removes, everything else replaces.
func mergePatch(doc, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(d, k)
			continue
		}
		d[k] = mergePatch(d[k], v)
	}
	return d
}
