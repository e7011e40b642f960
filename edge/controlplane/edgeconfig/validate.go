package edgeconfig

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid marks every validation failure.
var ErrInvalid = errors.New("invalid edge configuration")

var (
	namePattern    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	servicePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_-]{0,62})$`)
	retryOn        = []string{"connect-failure", "reset", "gateway-error", "refused-stream", "retriable-status-codes", "5xx"}
	limitUnits     = []string{"second", "minute", "hour", "day"}
	methods        = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

	// The names of the routes the control plane adds to the document's
	// (irbuild): its health answer and final 404, the edge's docs and
	// dashboard, the read half of a cached route (<name>-cached), the 404s
	// hiding operational paths (hide-…) and the catalog proxy (proxy-…).
	// A document route with one of them would give the model two routes
	// of one name, and every build would then fail while the document
	// stood accepted.
	reservedNames    = []string{"ingress-health", "not-found", "docs", "openapi", "dashboard", "dashboard-assets"}
	reservedPrefixes = []string{"hide-", "proxy-"}
	reservedSuffix   = "-cached"
)

// Validate reports every problem of the document at once, each prefixed
// with where it is.
func (d Document) Validate() error {
	var v validator
	if d.Version != 1 {
		v.add("version", "must be 1")
	}
	v.auth(d.Auth)
	v.policy("defaults", d.Defaults, true)
	if len(d.Routes) == 0 {
		v.add("routes", "at least one route is needed")
	}
	names := map[string]bool{}
	for i, r := range d.Routes {
		at := fmt.Sprintf("routes[%d]", i)
		if !namePattern.MatchString(r.Name) {
			v.add(at+".name", "must be lower-case letters, digits and dashes")
		} else if names[r.Name] {
			v.add(at+".name", "duplicates another route's name")
		} else if reservedName(r.Name) {
			v.add(at+".name", "is reserved for the routes the control plane adds")
		}
		names[r.Name] = true
		v.route(at, r)
	}
	if d.Edge.Service != "" && !servicePattern.MatchString(d.Edge.Service) {
		v.add("edge.service", "must name a service")
	}
	if d.Edge.Service == "" && d.Edge.Docs {
		v.add("edge.docs", "needs edge.service")
	}
	if d.Edge.Service == "" && d.Edge.Dashboard {
		v.add("edge.dashboard", "needs edge.service")
	}
	for i, r := range d.Routes {
		if r.Cache && d.Edge.Service == "" {
			v.add(fmt.Sprintf("routes[%d].cache", i), "needs edge.service")
		}
	}
	v.tracing(d.Tracing)
	// Sorted: the messages are written to KV and logs, and map order
	// would give the same document a different text each time.
	for _, alias := range slices.Sorted(maps.Keys(d.Proxy.Aliases)) {
		if target := d.Proxy.Aliases[alias]; !servicePattern.MatchString(alias) || !servicePattern.MatchString(target) {
			v.add("proxy.aliases."+alias, "alias and target must be service names")
		}
	}
	return v.err()
}

type validator struct{ problems []string }

func (v *validator) add(at, msg string) { v.problems = append(v.problems, at+": "+msg) }

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(v.problems, "; "))
}

func (v *validator) auth(a Auth) {
	if a.Issuer == "" {
		v.add("auth.issuer", "required")
	}
	if len(a.Audiences) == 0 {
		v.add("auth.audiences", "at least one audience is needed")
	}
	if !servicePattern.MatchString(a.JWKS.Service) {
		v.add("auth.jwks.service", "must name a service")
	}
	if !strings.HasPrefix(a.JWKS.Path, "/") {
		v.add("auth.jwks.path", "must start with /")
	}
	if a.JWKS.Refresh.D() < time.Second || a.JWKS.Refresh.D() > 24*time.Hour {
		v.add("auth.jwks.refresh", "must be between 1s and 24h")
	}
	if a.ClockSkew.D() < 0 || a.ClockSkew.D() > 5*time.Minute {
		v.add("auth.clockSkew", "must be between 0 and 5m")
	}
}

func (v *validator) route(at string, r Route) {
	switch {
	case (r.Path == "") == (r.Prefix == ""):
		v.add(at, "exactly one of path and prefix is needed")
	case r.Path != "" && !validPath(r.Path):
		v.add(at+".path", "must be an absolute path without spaces, ? or #")
	case r.Prefix != "" && !validPath(r.Prefix):
		v.add(at+".prefix", "must be an absolute path without spaces, ? or #")
	}
	if strings.HasPrefix(r.Path+r.Prefix, "/proxy/") {
		v.add(at, "/proxy/ is reserved for the catalog proxy")
	}
	if r.Rewrite != "" && !validPath(r.Rewrite) {
		v.add(at+".rewrite", "must be an absolute path")
	}
	if !servicePattern.MatchString(r.Service) {
		v.add(at+".service", "must name a service")
	}
	for _, m := range r.Methods {
		if !slices.Contains(methods, m) {
			v.add(at+".methods", fmt.Sprintf("%q is not a method the ingress routes", m))
		}
	}
	if r.OutlierDetection != nil || r.CircuitBreaker != nil {
		v.add(at, "outlierDetection and circuitBreaker apply per service: set them in defaults")
	}
	v.policy(at, r.Policy, false)
}

func reservedName(name string) bool {
	return slices.Contains(reservedNames, name) || strings.HasSuffix(name, reservedSuffix) ||
		slices.ContainsFunc(reservedPrefixes, func(p string) bool { return strings.HasPrefix(name, p) })
}

func validPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.ContainsAny(p, " ?#\t\n") && !strings.Contains(p, "//")
}

func (v *validator) policy(at string, p Policy, complete bool) {
	if complete {
		// A list, not a map: the messages are written to KV and logs, and
		// must come in the same order every time.
		for _, f := range []struct {
			field   string
			missing bool
		}{
			{"circuitBreaker", p.CircuitBreaker == nil},
			{"outlierDetection", p.OutlierDetection == nil},
			{"rateLimit", p.RateLimit == nil},
			{"retries", p.Retries == nil},
			{"timeout", p.Timeout == nil},
		} {
			if f.missing {
				v.add(at+"."+f.field, "required in defaults")
			}
		}
	}
	if p.Timeout != nil && (p.Timeout.D() <= 0 || p.Timeout.D() > 5*time.Minute) {
		v.add(at+".timeout", "must be between 0 and 5m")
	}
	if r := p.Retries; r != nil {
		if r.Attempts > 10 {
			v.add(at+".retries.attempts", "at most 10")
		}
		if r.PerTryTimeout.D() < 0 || (p.Timeout != nil && r.PerTryTimeout.D() > p.Timeout.D()) {
			v.add(at+".retries.perTryTimeout", "must be positive and within the timeout")
		}
		for _, on := range r.RetryOn {
			if !slices.Contains(retryOn, on) {
				v.add(at+".retries.retryOn", fmt.Sprintf("%q is not one of %s", on, strings.Join(retryOn, ", ")))
			}
		}
		if r.BudgetPercent < 0 || r.BudgetPercent > 100 {
			v.add(at+".retries.budgetPercent", "must be between 0 and 100")
		}
	}
	if o := p.OutlierDetection; o != nil {
		if o.Interval.D() <= 0 || o.BaseEjectionTime.D() <= 0 {
			v.add(at+".outlierDetection", "interval and baseEjectionTime must be positive")
		}
		if o.MaxEjectionPercent > 100 {
			v.add(at+".outlierDetection.maxEjectionPercent", "at most 100")
		}
	}
	if c := p.CircuitBreaker; c != nil && (c.MaxConnections == 0 || c.MaxPendingRequests == 0 || c.MaxRequests == 0) {
		v.add(at+".circuitBreaker", "every threshold must be positive")
	}
	if rl := p.RateLimit; rl != nil {
		if b := rl.Local; b != nil && (b.Requests == 0 || b.Per.D() < time.Millisecond*50 || b.Burst < b.Requests) {
			v.add(at+".rateLimit.local", "requests must be positive, per at least 50ms, burst at least requests")
		}
		if g := rl.Global; g != nil {
			v.limit(at+".rateLimit.global.perClient", g.PerClient)
			v.limit(at+".rateLimit.global.perSubject", g.PerSubject)
		}
	}
}

func (v *validator) tracing(t Tracing) {
	if t.Collector != "" {
		host, port, err := net.SplitHostPort(t.Collector)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
			v.add("tracing.collector", "must be host:port")
		}
	}
	// Written so that NaN fails too.
	if !(t.SamplingPercent >= 0 && t.SamplingPercent <= 100) {
		v.add("tracing.samplingPercent", "must be between 0 and 100")
	} else if t.SamplingPercent > 0 && t.SamplingPercent < 0.01 {
		// Envoy samples in steps of 0.01 %: a smaller percent would
		// silently be 0.
		v.add("tracing.samplingPercent", "must be 0 or at least 0.01 (Envoy samples in steps of 0.01 %)")
	}
}

func (v *validator) limit(at string, l *Limit) {
	if l == nil {
		return
	}
	if l.Requests == 0 {
		v.add(at+".requests", "must be positive")
	}
	if !slices.Contains(limitUnits, l.Per) {
		v.add(at+".per", "must be second, minute, hour or day")
	}
}
