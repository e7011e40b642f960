// Package ir is the control plane's intermediate model of what the ingress
// must do: a small, validated description that the builder produces from
// the edge configuration and the catalog, and the translator turns into
// Envoy resources. It holds no Envoy types, so each stage stays testable on
// its own.
package ir

import "time"

// Xds is everything one ingress Envoy is configured with.
type Xds struct {
	Listener Listener `json:"listener"`
	// Auth verifies bearer tokens; routes marked Public skip it.
	Auth *Auth `json:"auth,omitempty"`
	// Routes are matched in order; the first match wins.
	Routes []Route `json:"routes"`
	// Clusters are the mesh services the routes send to, sorted by name.
	Clusters []Cluster `json:"clusters"`
	// Identity is the ingress's own mesh identity, presented to sidecars.
	Identity Identity `json:"identity"`
	// RateLimitService counts the global limits; nil turns them off.
	RateLimitService *RateLimitService `json:"rateLimitService,omitempty"`
	// Tracing makes the ingress start OpenTelemetry spans; nil turns it
	// off (no tracer, nothing sampled, nothing sent).
	Tracing *Tracing `json:"tracing,omitempty"`
}

// Listener is where clients connect.
type Listener struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
}

// Auth configures JWT verification.
type Auth struct {
	Issuer    string   `json:"issuer"`
	Audiences []string `json:"audiences"`
	// JWKSCluster and JWKSPath locate the key set inside the mesh.
	JWKSCluster string        `json:"jwksCluster"`
	JWKSPath    string        `json:"jwksPath"`
	Refresh     time.Duration `json:"refresh"`
	ClockSkew   time.Duration `json:"clockSkew"`
}

// Route is one rule of the route table.
type Route struct {
	Name string `json:"name"`
	// Exactly one of Path (exact match) and Prefix.
	Path   string `json:"path,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	// Methods restricts the match; empty matches all.
	Methods []string `json:"methods,omitempty"`
	// Cluster receives the request, with the matched path or prefix
	// replaced by Rewrite when it is set.
	Cluster string `json:"cluster,omitempty"`
	Rewrite string `json:"rewrite,omitempty"`
	// ForwardedPrefix is sent as X-Forwarded-Prefix: the part of the
	// client's path that the rewrite removed, so services can build links.
	ForwardedPrefix string `json:"forwardedPrefix,omitempty"`
	// SetHeaders are request headers the ingress sets, replacing any value.
	SetHeaders map[string]string `json:"setHeaders,omitempty"`
	// Direct answers at the ingress instead of forwarding.
	Direct *DirectResponse `json:"direct,omitempty"`
	// Public routes need no token.
	Public  bool          `json:"public,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retry applies to idempotent methods only, and to writes with an
	// Idempotency-Key when RetryKeyedWrites.
	Retry *Retry `json:"retry,omitempty"`
	// RetryKeyedWrites: the service deduplicates writes by their
	// Idempotency-Key, so a keyed write is retried as reads are.
	RetryKeyedWrites bool `json:"retryKeyedWrites,omitempty"`
	// LocalRateLimit is a token bucket in each ingress instance.
	LocalRateLimit *TokenBucket `json:"localRateLimit,omitempty"`
	// GlobalRateLimits are shared by every ingress instance.
	GlobalRateLimits []GlobalRateLimit `json:"globalRateLimits,omitempty"`
}

// DirectResponse is an answer the ingress gives itself.
type DirectResponse struct {
	Status      uint32 `json:"status"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

// Retry is the retry policy of idempotent requests.
type Retry struct {
	Attempts      uint32        `json:"attempts"`
	PerTryTimeout time.Duration `json:"perTryTimeout"`
	On            []string      `json:"on"`
}

// TokenBucket refills Tokens every Interval up to MaxTokens.
type TokenBucket struct {
	MaxTokens uint32        `json:"maxTokens"`
	Tokens    uint32        `json:"tokens"`
	Interval  time.Duration `json:"interval"`
}

// Rate-limit descriptor keys: what a global limit counts by.
const (
	ByClient  = "client"  // the client's address
	BySubject = "subject" // the verified token's subject
)

// GlobalRateLimit counts the route's requests by Key.
type GlobalRateLimit struct {
	Key      string `json:"key"`
	Requests uint32 `json:"requests"`
	Unit     string `json:"unit"` // second, minute, hour or day
}

// Cluster is one mesh service reached through its sidecars over mTLS.
type Cluster struct {
	Name string `json:"name"`
	// SNI and SpiffeID are what the sidecars present and expect.
	SNI                string         `json:"sni"`
	SpiffeID           string         `json:"spiffeID"`
	Endpoints          []Endpoint     `json:"endpoints"`
	ConnectTimeout     time.Duration  `json:"connectTimeout"`
	Outlier            Outlier        `json:"outlier"`
	CircuitBreaker     CircuitBreaker `json:"circuitBreaker"`
	RetryBudgetPercent float64        `json:"retryBudgetPercent"`
}

// Endpoint is a healthy sidecar's public listener.
type Endpoint struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
}

// Outlier ejects failing instances.
type Outlier struct {
	Consecutive5xx           uint32        `json:"consecutive5xx"`
	ConsecutiveGatewayErrors uint32        `json:"consecutiveGatewayErrors"`
	Interval                 time.Duration `json:"interval"`
	BaseEjectionTime         time.Duration `json:"baseEjectionTime"`
	MaxEjectionPercent       uint32        `json:"maxEjectionPercent"`
}

// CircuitBreaker bounds concurrent load on a service.
type CircuitBreaker struct {
	MaxConnections     uint32 `json:"maxConnections"`
	MaxPendingRequests uint32 `json:"maxPendingRequests"`
	MaxRequests        uint32 `json:"maxRequests"`
}

// Identity is the ingress's Connect leaf certificate and the CA roots.
type Identity struct {
	CertPEM     string   `json:"certPEM"`
	KeyPEM      string   `json:"keyPEM"`
	RootsPEM    []string `json:"rootsPEM"`
	TrustDomain string   `json:"trustDomain"`
}

// DefaultConnectTimeout bounds connection set-up to services the model
// names outside the mesh, such as the rate-limit service.
const DefaultConnectTimeout = 2 * time.Second

// RateLimitService is the envoyproxy/ratelimit service, reached over gRPC.
type RateLimitService struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	Domain  string `json:"domain"`
	// FailOpen lets requests through when the service cannot answer.
	FailOpen bool `json:"failOpen"`
}

// Tracing is the ingress's OpenTelemetry tracer: spans sent over OTLP/gRPC
// to a collector, W3C trace context (traceparent) propagated upstream.
type Tracing struct {
	// Address and Port are the collector's OTLP/gRPC listener.
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	// ServiceName is the spans' service.name.
	ServiceName string `json:"serviceName"`
	// SamplingPercent of the requests that arrive without a sampled
	// traceparent start a trace: 0 to 100.
	SamplingPercent float64 `json:"samplingPercent"`
}
