package translate

import (
	"slices"
	"strings"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/services/platform/contract"
)

// A write that carries an Idempotency-Key is safe to send twice: the
// service keeps the response of the first request with the key in the
// write's own transaction and answers every repeat from it
// (services/platform/idempotency). So the ingress retries such a write on
// the failures it retries reads on, which include a service that took the
// request and died (reset, a sidecar's 503), on another instance
// (retryPolicy's previous_hosts predicate) within the cluster's retry
// budget. A write without the key keeps only the retries where the
// request cannot have arrived (safeRetryOn).

// keyedWriteRoute is the write route of r for requests with an
// Idempotency-Key (any value: a malformed key is the service's to refuse,
// with 400). It goes just before the plain write route, which takes the
// requests without one.
func keyedWriteRoute(r ir.Route, writes []string) (*route.Route, error) {
	rp, err := retryPolicy(r.Retry, keyedRetryOn(r.Retry.On))
	if err != nil {
		return nil, err
	}
	er, err := forwardRoute(r, writes, rp)
	if err != nil {
		return nil, err
	}
	er.Match.Headers = append(er.Match.Headers, &route.HeaderMatcher{
		Name:                 strings.ToLower(contract.HeaderIdempotencyKey),
		HeaderMatchSpecifier: &route.HeaderMatcher_PresentMatch{PresentMatch: true},
	})
	return er, nil
}

// keyedRetryOn is what reads retry on (the route's configured failures)
// and what every write retries on, once each, in that order.
func keyedRetryOn(configured []string) string {
	on := slices.Clone(configured)
	for _, c := range strings.Split(safeRetryOn, ",") {
		if !slices.Contains(on, c) {
			on = append(on, c)
		}
	}
	return strings.Join(on, ",")
}
