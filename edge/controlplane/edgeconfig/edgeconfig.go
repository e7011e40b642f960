// Package edgeconfig is the edge configuration document: the routes and
// policies an operator asks the ingress to serve. It parses strictly and
// validates completely, so a bad document is rejected whole, with every
// reason, before anything is built from it.
package edgeconfig

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"sigs.k8s.io/yaml"
)

//go:embed default.yaml
var defaultDocument []byte

// Default returns the document shipped in the repository.
func Default() []byte { return append([]byte(nil), defaultDocument...) }

// Document is the whole edge configuration.
type Document struct {
	Version  int     `json:"version"`
	Auth     Auth    `json:"auth"`
	Defaults Policy  `json:"defaults"`
	Routes   []Route `json:"routes"`
	Proxy    Proxy   `json:"proxy"`
	Edge     Edge    `json:"edge"`
	// Tracing configures the ingress's spans; absent means a sampling
	// percent of 0 (only requests that arrive sampled are traced).
	Tracing Tracing `json:"tracing,omitzero"`
}

// Tracing configures the OpenTelemetry spans of the ingress. Tracing is
// on when a collector is known: Collector here, or else the one the
// control plane is started with (TRACING_COLLECTOR_ADDR); with neither,
// the ingress has no tracer at all.
type Tracing struct {
	// Collector is the OTLP/gRPC collector's host:port.
	Collector string `json:"collector,omitempty"`
	// SamplingPercent of the requests arriving without a sampled
	// traceparent start a trace, from 0 to 100 (fractions allowed: 0.1).
	SamplingPercent float64 `json:"samplingPercent"`
}

// Edge names the service that caches responses and serves the merged API
// documentation.
type Edge struct {
	// Service is its name in the catalog; empty turns caching and docs off.
	Service string `json:"service,omitempty"`
	// Docs serves /docs/ and /openapi.json from it.
	Docs bool `json:"docs,omitempty"`
	// Dashboard serves the web dashboard from it at / and /web/.
	Dashboard bool `json:"dashboard,omitempty"`
}

// Auth says how the ingress verifies bearer tokens.
type Auth struct {
	Issuer    string   `json:"issuer"`
	Audiences []string `json:"audiences"`
	JWKS      JWKS     `json:"jwks"`
	ClockSkew Duration `json:"clockSkew"`
}

// JWKS names where the signing keys are published, inside the mesh.
type JWKS struct {
	Service string   `json:"service"`
	Path    string   `json:"path"`
	Refresh Duration `json:"refresh"`
}

// Policy is what applies to a route's traffic; route values override the
// defaults field by field.
type Policy struct {
	Timeout          *Duration         `json:"timeout,omitempty"`
	Retries          *Retries          `json:"retries,omitempty"`
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	CircuitBreaker   *CircuitBreaker   `json:"circuitBreaker,omitempty"`
	RateLimit        *RateLimit        `json:"rateLimit,omitempty"`
}

// Retries retry idempotent requests that failed before reaching a service
// or with a gateway error.
type Retries struct {
	Attempts      uint32   `json:"attempts"`
	PerTryTimeout Duration `json:"perTryTimeout"`
	RetryOn       []string `json:"retryOn"`
	BudgetPercent float64  `json:"budgetPercent"`
}

// OutlierDetection ejects instances that keep failing.
type OutlierDetection struct {
	Consecutive5xx           uint32   `json:"consecutive5xx"`
	ConsecutiveGatewayErrors uint32   `json:"consecutiveGatewayErrors"`
	Interval                 Duration `json:"interval"`
	BaseEjectionTime         Duration `json:"baseEjectionTime"`
	MaxEjectionPercent       uint32   `json:"maxEjectionPercent"`
}

// CircuitBreaker bounds the load the ingress puts on one service.
type CircuitBreaker struct {
	MaxConnections     uint32 `json:"maxConnections"`
	MaxPendingRequests uint32 `json:"maxPendingRequests"`
	MaxRequests        uint32 `json:"maxRequests"`
}

// RateLimit has a per-instance token bucket and limits shared by every
// ingress instance.
type RateLimit struct {
	Local  *TokenBucket  `json:"local,omitempty"`
	Global *GlobalLimits `json:"global,omitempty"`
}

// TokenBucket refills Requests tokens every Per, holding at most Burst.
type TokenBucket struct {
	Requests uint32   `json:"requests"`
	Per      Duration `json:"per"`
	Burst    uint32   `json:"burst"`
}

// GlobalLimits are counted across ingress instances.
type GlobalLimits struct {
	// PerClient counts by client address.
	PerClient *Limit `json:"perClient,omitempty"`
	// PerSubject counts by the verified token's subject.
	PerSubject *Limit `json:"perSubject,omitempty"`
}

// Limit is a number of requests per unit.
type Limit struct {
	Requests uint32 `json:"requests"`
	Per      string `json:"per"` // second, minute, hour or day
}

// Route sends matching requests to a service.
type Route struct {
	Name string `json:"name"`
	// Exactly one of Path (exact) and Prefix.
	Path   string `json:"path,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	// Methods restricts the match; empty matches every method.
	Methods []string `json:"methods,omitempty"`
	Service string   `json:"service"`
	// Rewrite replaces the matched path or prefix.
	Rewrite string `json:"rewrite,omitempty"`
	// Public routes need no token.
	Public bool `json:"public,omitempty"`
	// Cache sends the route's GET and HEAD requests through the edge
	// service's response cache; the service decides what is cacheable.
	Cache bool `json:"cache,omitempty"`
	// IdempotencyKeys says the service honours an Idempotency-Key on
	// this route's writes: it keeps the first response with the key and
	// answers every repeat from it (services/platform/idempotency). Then
	// the ingress may retry a keyed write as it retries reads. Set it only
	// for services that do: a repeat of a write its service does not
	// deduplicate is a second write (a second registration answers 409).
	IdempotencyKeys bool `json:"idempotencyKeys,omitempty"`
	Policy
}

// Proxy configures /proxy/<service>/<path>.
type Proxy struct {
	Enabled bool              `json:"enabled"`
	Aliases map[string]string `json:"aliases,omitempty"`
	Exclude []string          `json:"exclude,omitempty"`
}

// Duration is a time.Duration written as "15s" or "1m".
type Duration time.Duration

// D returns the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"15s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Parse reads a YAML (or JSON) document, rejecting unknown fields, and
// validates it.
func Parse(data []byte) (Document, error) {
	var doc Document
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return Document{}, fmt.Errorf("edge configuration: %w", err)
	}
	if err := doc.Validate(); err != nil {
		return Document{}, err
	}
	return doc, nil
}
