package irbuild

import (
	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
)

// merge gives a route's effective policy: each field the route sets
// replaces the default's. The defaults are complete (validation ensures
// it), so every field of the result is set.
func merge(defaults, route edgeconfig.Policy) edgeconfig.Policy {
	p := defaults
	if route.Timeout != nil {
		p.Timeout = route.Timeout
	}
	if route.Retries != nil {
		p.Retries = route.Retries
	}
	if route.RateLimit != nil {
		rl := *p.RateLimit
		if route.RateLimit.Local != nil {
			rl.Local = route.RateLimit.Local
		}
		if route.RateLimit.Global != nil {
			rl.Global = route.RateLimit.Global
		}
		p.RateLimit = &rl
	}
	return p
}

// applyPolicy sets a route's retries and rate limits from its policy;
// global limits only when a rate-limit service counts them.
func applyPolicy(r *ir.Route, p edgeconfig.Policy, global bool) {
	if rt := p.Retries; rt != nil && rt.Attempts > 0 && r.RetriesAllowed() {
		r.Retry = &ir.Retry{Attempts: rt.Attempts, PerTryTimeout: rt.PerTryTimeout.D(), On: append([]string(nil), rt.RetryOn...)}
	}
	if p.RateLimit == nil {
		return
	}
	if l := p.RateLimit.Local; l != nil {
		r.LocalRateLimit = &ir.TokenBucket{MaxTokens: l.Burst, Tokens: l.Requests, Interval: l.Per.D()}
	}
	if g := p.RateLimit.Global; g != nil && global {
		if g.PerClient != nil {
			r.GlobalRateLimits = append(r.GlobalRateLimits, ir.GlobalRateLimit{Key: ir.ByClient, Requests: g.PerClient.Requests, Unit: g.PerClient.Per})
		}
		// A subject exists only once a token was verified.
		if g.PerSubject != nil && !r.Public {
			r.GlobalRateLimits = append(r.GlobalRateLimits, ir.GlobalRateLimit{Key: ir.BySubject, Requests: g.PerSubject.Requests, Unit: g.PerSubject.Per})
		}
	}
}
