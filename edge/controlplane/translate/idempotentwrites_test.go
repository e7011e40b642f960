package translate_test

import (
	"slices"
	"strings"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/portico-mesh/portico/edge/controlplane/translate"
)

// A write retries on the failures reads retry on only when it carries an
// Idempotency-Key: each retrying route with writes has a keyed route,
// matched before its plain write route (Envoy takes the first match),
// retrying on the configured failures; without retries or without
// writes there is none, and no route without the header matcher retries
// a write on more than the safe failures.
func TestKeyedWritesRetryLikeReads(t *testing.T) {
	res, err := translate.Translate(readModel(t, "testdata/in/idempotent-writes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rc := res.Routes[0].(*route.RouteConfiguration)
	routes := rc.GetVirtualHosts()[0].GetRoutes()
	type seen struct{ keyed, plainWrite int }
	byName := map[string]*seen{}
	for i, er := range routes {
		action := er.GetRoute()
		if action == nil {
			continue // a direct answer
		}
		s := byName[er.GetName()]
		if s == nil {
			s = &seen{keyed: -1, plainWrite: -1}
			byName[er.GetName()] = s
		}
		retryOn := strings.Split(action.GetRetryPolicy().GetRetryOn(), ",")
		switch {
		case hasKeyMatcher(er):
			s.keyed = i
			if !slices.Contains(retryOn, "reset") && !slices.Contains(retryOn, "5xx") {
				t.Errorf("keyed route %s retries on %v: not what its reads retry on", er.GetName(), retryOn)
			}
		case readsOnly(er):
		default:
			s.plainWrite = i
			if action.GetRetryPolicy() != nil && !slices.Equal(retryOn, []string{"connect-failure", "refused-stream"}) {
				t.Errorf("write route %s without a key retries on %v, want only the safe failures", er.GetName(), retryOn)
			}
		}
	}
	for name, want := range map[string]bool{"products": true, "products-create": true, "catalog-read": false, "orders": false, "register": false} {
		s := byName[name]
		if s == nil {
			t.Fatalf("no route %s", name)
		}
		switch {
		case want && s.keyed < 0:
			t.Errorf("%s: no keyed write route", name)
		case want && s.keyed > s.plainWrite:
			t.Errorf("%s: the keyed route (%d) comes after the plain write route (%d), which would take its requests", name, s.keyed, s.plainWrite)
		case !want && s.keyed >= 0:
			t.Errorf("%s: a keyed write route, though the route does not retry, has no writes or its service does not deduplicate keyed writes", name)
		}
	}
}

func hasKeyMatcher(er *route.Route) bool {
	return slices.ContainsFunc(er.GetMatch().GetHeaders(), func(h *route.HeaderMatcher) bool {
		return h.GetName() == "idempotency-key" && h.GetPresentMatch()
	})
}

// readsOnly reports whether the route matches only idempotent methods.
func readsOnly(er *route.Route) bool {
	for _, h := range er.GetMatch().GetHeaders() {
		if h.GetName() != ":method" {
			continue
		}
		m := h.GetStringMatch()
		re := m.GetSafeRegex().GetRegex()
		return m.GetExact() == "GET" || re == "^(GET|HEAD|OPTIONS)$" || re == "^(GET|HEAD)$"
	}
	return false
}
