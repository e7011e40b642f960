package edgeconfig

import (
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestDefaultDocumentIsValid(t *testing.T) {
	doc, err := Parse(Default())
	if err != nil {
		t.Fatalf("the shipped default does not parse: %v", err)
	}
	if len(doc.Routes) == 0 || doc.Auth.Issuer == "" || doc.Defaults.Retries == nil {
		t.Fatalf("default document is missing parts: %+v", doc)
	}
}

// mutate parses the default, applies change to its generic form and parses
// the result again, so each case states only what it breaks.
func mutate(t *testing.T, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(Default(), &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func routes(m map[string]any) []any { return m["routes"].([]any) }
func route(m map[string]any, i int) map[string]any {
	return routes(m)[i].(map[string]any)
}

func TestInvalidDocumentsAreRejectedWithTheReason(t *testing.T) {
	tests := []struct {
		name   string
		change func(m map[string]any)
		want   []string
	}{
		{"unknown field", func(m map[string]any) { m["routez"] = 1 }, []string{`unknown field "routez"`}},
		{"wrong version", func(m map[string]any) { m["version"] = 2 }, []string{"version: must be 1"}},
		{"no routes", func(m map[string]any) { m["routes"] = []any{} }, []string{"routes: at least one route"}},
		{"path and prefix", func(m map[string]any) { route(m, 0)["prefix"] = "/x/" }, []string{"routes[0]: exactly one of path and prefix"}},
		{"relative path", func(m map[string]any) { route(m, 0)["path"] = "api/users" }, []string{"routes[0].path"}},
		{"duplicate name", func(m map[string]any) { route(m, 1)["name"] = route(m, 0)["name"] }, []string{"routes[1].name: duplicates"}},
		{"bad method", func(m map[string]any) { route(m, 0)["methods"] = []any{"BREW"} }, []string{`"BREW" is not a method`}},
		{"proxy prefix reserved", func(m map[string]any) { route(m, 3)["prefix"] = "/proxy/users/" }, []string{"/proxy/ is reserved"}},
		{"bad duration", func(m map[string]any) { m["defaults"].(map[string]any)["timeout"] = "soon" }, []string{"invalid duration"}},
		{"retry condition", func(m map[string]any) {
			m["defaults"].(map[string]any)["retries"].(map[string]any)["retryOn"] = []any{"always"}
		}, []string{`"always" is not one of`}},
		{"limit unit", func(m map[string]any) {
			route(m, 1)["rateLimit"].(map[string]any)["global"].(map[string]any)["perClient"].(map[string]any)["per"] = "fortnight"
		}, []string{"routes[1].rateLimit.global.perClient.per"}},
		{"breaker per route", func(m map[string]any) {
			route(m, 0)["circuitBreaker"] = map[string]any{"maxConnections": 1, "maxPendingRequests": 1, "maxRequests": 1}
		}, []string{"apply per service"}},
		{"edge features without the edge", func(m map[string]any) {
			delete(m["edge"].(map[string]any), "service")
		}, []string{"edge.docs: needs edge.service", "edge.dashboard: needs edge.service", ".cache: needs edge.service"}},
		{"sampling above 100 percent", func(m map[string]any) {
			m["tracing"] = map[string]any{"samplingPercent": 101}
		}, []string{"tracing.samplingPercent: must be between 0 and 100"}},
		{"sampling finer than Envoy's step", func(m map[string]any) {
			m["tracing"] = map[string]any{"samplingPercent": 0.001}
		}, []string{"tracing.samplingPercent: must be 0 or at least 0.01"}},
		{"negative sampling", func(m map[string]any) {
			m["tracing"] = map[string]any{"samplingPercent": -0.5}
		}, []string{"tracing.samplingPercent"}},
		{"collector without a port", func(m map[string]any) {
			m["tracing"] = map[string]any{"collector": "jaeger", "samplingPercent": 1}
		}, []string{"tracing.collector: must be host:port"}},
		{"collector port zero", func(m map[string]any) {
			m["tracing"] = map[string]any{"collector": "jaeger:0", "samplingPercent": 1}
		}, []string{"tracing.collector: must be host:port"}},
		{"unknown tracing field", func(m map[string]any) {
			m["tracing"] = map[string]any{"sampling": 1}
		}, []string{`unknown field "sampling"`}},
		{"missing issuer and skew too large", func(m map[string]any) {
			a := m["auth"].(map[string]any)
			delete(a, "issuer")
			a["clockSkew"] = "1h"
		}, []string{"auth.issuer: required", "auth.clockSkew"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(mutate(t, tc.change))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestTracingSection(t *testing.T) {
	doc, err := Parse(mutate(t, func(m map[string]any) {
		m["tracing"] = map[string]any{"collector": "jaeger:4317", "samplingPercent": 0.5}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Tracing{Collector: "jaeger:4317", SamplingPercent: 0.5}); doc.Tracing != want {
		t.Fatalf("tracing = %+v, want %+v", doc.Tracing, want)
	}
	doc, err = Parse(mutate(t, func(m map[string]any) { delete(m, "tracing") }))
	if err != nil {
		t.Fatal(err)
	}
	if doc.Tracing != (Tracing{}) {
		t.Fatalf("no tracing section gave %+v, want the zero value (no collector, 0 %%)", doc.Tracing)
	}
}

func TestValidationErrorsAreMarked(t *testing.T) {
	_, err := Parse(mutate(t, func(m map[string]any) { m["version"] = 3 }))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("%v is not ErrInvalid", err)
	}
}

// TestValidationMessagesComeInOneOrder: the reasons are written to KV and
// logs, so the same document must always give the same text.
func TestValidationMessagesComeInOneOrder(t *testing.T) {
	doc := mutate(t, func(m map[string]any) { m["defaults"] = map[string]any{} })
	_, first := Parse(doc)
	if first == nil {
		t.Fatal("empty defaults accepted")
	}
	want := "defaults.circuitBreaker: required in defaults; defaults.outlierDetection: required in defaults; " +
		"defaults.rateLimit: required in defaults; defaults.retries: required in defaults; defaults.timeout: required in defaults"
	if !strings.Contains(first.Error(), want) {
		t.Fatalf("error %q does not list the missing defaults in order:\n%s", first, want)
	}
	for range 50 {
		if _, err := Parse(doc); err == nil || err.Error() != first.Error() {
			t.Fatalf("validation gave %q, then %q", first, err)
		}
	}
}
