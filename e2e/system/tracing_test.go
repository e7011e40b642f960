package system_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/mesh/localenv"
)

// TestOneTraceThroughTheIngress: one product written through the ingress
// is one trace in Jaeger, read back through its query API by the trace id
// of the request's ingress access-log line (which the sidecar's access log
// and the service's log line of the request carry too): the ingress's span and its
// upstream attempt, the products sidecar's span under that attempt, the
// products service's span under the sidecar's (W3C traceparent at each
// hop), its SQL under that, and the event the write committed: enqueued
// under the service's span, published by the relay under the enqueue span,
// consumed by the edge's purge consumer under the publish span.
func TestOneTraceThroughTheIngress(t *testing.T) {
	// The user agent finds the request's access-log line.
	agent := "e2e-trace-" + randomHex(6)
	expect(t, http.StatusCreated, request{
		method: http.MethodPost, path: "/api/products/products", token: sys.alice.Token,
		header: map[string]string{"User-Agent": agent},
		body:   fmt.Sprintf(`{"name": %q, "description": "traced by e2e/system", "price": "9.99", "stock_quantity": 1}`, "Traced "+randomHex(4)),
	})

	line := waitAccessLog(t, agent)
	traceID, _ := line["trace_id"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(traceID) || strings.Trim(traceID, "0") == "" {
		t.Fatalf("the ingress access-log line has no trace id: %v", line)
	}

	// Each process sends its spans on its own schedule: wait until the
	// whole chain is there (a broken one times out, naming what is missing).
	var hops writeHops
	tree := waitTrace(t, traceID, func(tr trace) (err error) {
		hops, err = productWriteHops(tr)
		return err
	})
	root, sidecar := hops.root, hops.sidecar
	if root.Tags["route.name"] != "products" || root.Tags["request.id"] == "" {
		t.Errorf("the ingress span's attributes: route.name %q (want products), request.id %q\n%s",
			root.Tags["route.name"], root.Tags["request.id"], tree)
	}
	if root.Tags["request.id"] != "" && line["request_id"] != root.Tags["request.id"] {
		t.Errorf("request.id %q on the span, %v in the access log", root.Tags["request.id"], line["request_id"])
	}
	// The sidecar's access-log line of the request, and the products
	// instance's own log line of it, carry the trace id.
	instanceID := strings.TrimSuffix(sidecar.Tags["node_id"], "-sidecar-proxy")
	for _, logPath := range []string{
		filepath.Join(sys.stack.Path("sidecars"), "envoy-"+instanceID+".log"),
		sys.stack.Path("logs", instanceID+".log"),
	} {
		if err := localenv.Poll(t.Context(), 100*time.Millisecond, func(context.Context) error {
			b, err := os.ReadFile(logPath)
			if err != nil {
				return err
			}
			if !strings.Contains(string(b), `"trace_id":"`+traceID+`"`) {
				return fmt.Errorf("no log line with trace_id %s in %s", traceID, logPath)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	// The event of the write continues the trace: the outbox's enqueue span
	// under the service's request span, the relay's publish span under the
	// enqueue span (the context stored with the event), and the edge's
	// purge consumer under the publish span (the AMQP traceparent header).
	for _, hop := range []struct {
		name string
		span localenv.TraceSpan
	}{
		{"enqueue", hops.enqueue}, {"publish", hops.publish}, {"process", hops.process},
	} {
		t.Logf("%s: %s/%s", hop.name, hop.span.Service, hop.span.Operation)
	}
	t.Logf("ingress access log: %s\ntrace %s:\n%s", mustJSON(t, line), traceID, tree)
}

// writeHops are the spans of one product write, hop by hop.
type writeHops struct {
	root, sidecar, server localenv.TraceSpan
	sql                   []localenv.TraceSpan
	// The event's hops: committed with the write, published by the relay,
	// consumed by the edge.
	enqueue, publish, process localenv.TraceSpan
}

// productWriteHops finds, in tr, the ingress's request span at the root,
// the products sidecar's span under one of its upstream attempts (its
// other child is the call to the rate-limit service), the products
// service's span under the sidecar's, and SQL under that.
func productWriteHops(tr trace) (writeHops, error) {
	var h writeHops
	h.root = tr.root()
	if h.root.Service != "ingress" {
		return h, fmt.Errorf("the trace starts at %s/%s, not at the ingress", h.root.Service, h.root.Operation)
	}
	sidecar := tr.find(func(s localenv.TraceSpan) bool {
		attempt := tr.byID(s.ParentID)
		return s.Service == "mesh-sidecar" && strings.HasPrefix(s.Tags["node_id"], "products-") &&
			attempt != nil && attempt.Service == "ingress" && attempt.ParentID == h.root.SpanID
	})
	if sidecar == nil {
		return h, errors.New("no products sidecar span under an upstream span of the ingress's request span")
	}
	h.sidecar = *sidecar
	server := tr.childOf(h.sidecar, "products")
	if server == nil {
		return h, errors.New("no products service span under its sidecar's")
	}
	h.server = *server
	if h.sql = tr.sqlUnder(server); len(h.sql) == 0 {
		return h, errors.New("no SQL span under the products service's")
	}
	next := func(parent localenv.TraceSpan, service, prefix string) (localenv.TraceSpan, error) {
		s := tr.find(func(s localenv.TraceSpan) bool {
			return s.ParentID == parent.SpanID && s.Service == service && strings.HasPrefix(s.Operation, prefix)
		})
		if s == nil {
			return localenv.TraceSpan{}, fmt.Errorf("no %s span %q... under %s/%s", service, prefix, parent.Service, parent.Operation)
		}
		return *s, nil
	}
	var err error
	if h.enqueue, err = next(h.server, "products", "enqueue product.created"); err != nil {
		return h, err
	}
	if h.publish, err = next(h.enqueue, "products", "publish "); err != nil {
		return h, err
	}
	if h.process, err = next(h.publish, "edge", "process "); err != nil {
		return h, err
	}
	return h, nil
}

// waitAccessLog returns the ingress access-log line (JSON) of the request
// made with user agent agent.
func waitAccessLog(t *testing.T, agent string) map[string]any {
	t.Helper()
	var found map[string]any
	err := localenv.Poll(t.Context(), 100*time.Millisecond, func(context.Context) error {
		f, err := os.Open(sys.ingress.LogPath())
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if !strings.HasPrefix(sc.Text(), "{") || !strings.Contains(sc.Text(), agent) {
				continue
			}
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["user_agent"] == agent {
				found = rec
				return nil
			}
		}
		return fmt.Errorf("no access-log line with user agent %s in %s", agent, sys.ingress.LogPath())
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// trace is one trace's spans.
type trace []localenv.TraceSpan

// waitTrace reads the trace from Jaeger until complete accepts it (spans
// arrive in batches, from each process on its own).
func waitTrace(t *testing.T, traceID string, complete func(trace) error) trace {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var tr trace
	err := localenv.Poll(ctx, 250*time.Millisecond, func(ctx context.Context) error {
		spans, err := sys.jaeger.Trace(ctx, traceID)
		if err != nil {
			return err
		}
		tr = spans
		return complete(tr)
	})
	if err != nil {
		t.Fatalf("trace %s in Jaeger: %v\n%s", traceID, err, tr)
	}
	return tr
}

// root is the span without a parent in the trace.
func (tr trace) root() localenv.TraceSpan {
	for _, s := range tr {
		if s.ParentID == "" || tr.byID(s.ParentID) == nil {
			return s
		}
	}
	return localenv.TraceSpan{}
}

func (tr trace) byID(id string) *localenv.TraceSpan {
	for i := range tr {
		if tr[i].SpanID == id {
			return &tr[i]
		}
	}
	return nil
}

// childOf is the first child of parent from service.
func (tr trace) childOf(parent localenv.TraceSpan, service string) *localenv.TraceSpan {
	return tr.find(func(s localenv.TraceSpan) bool { return s.ParentID == parent.SpanID && s.Service == service })
}

func (tr trace) find(match func(localenv.TraceSpan) bool) *localenv.TraceSpan {
	for i := range tr {
		if match(tr[i]) {
			return &tr[i]
		}
	}
	return nil
}

// sqlUnder lists the database spans (otelpgx) below span.
func (tr trace) sqlUnder(span *localenv.TraceSpan) []localenv.TraceSpan {
	if span == nil {
		return nil
	}
	var out []localenv.TraceSpan
	for _, s := range tr {
		if s.Tags["db.system"] == "" && s.Tags["db.system.name"] == "" {
			continue
		}
		for p := tr.byID(s.ParentID); p != nil; p = tr.byID(p.ParentID) {
			if p.SpanID == span.SpanID {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// String draws the trace as a tree, for failure messages.
func (tr trace) String() string {
	var b strings.Builder
	var draw func(parent string, depth int)
	draw = func(parent string, depth int) {
		for _, s := range tr {
			if s.ParentID == parent || (parent == "" && tr.byID(s.ParentID) == nil && s.ParentID != "") {
				fmt.Fprintf(&b, "%s%s: %s (%s) node_id=%s route=%s\n", strings.Repeat("  ", depth), s.Service, s.Operation, s.SpanID,
					s.Tags["node_id"], s.Tags["route.name"])
				draw(s.SpanID, depth+1)
			}
		}
	}
	draw("", 0)
	return b.String()
}

// TestSamplingFollowsTheDocument: at samplingPercent 0 the ingress starts
// no trace, and nobody behind it does either (the services follow the
// unsampled traceparent the ingress sends); a client's sampled
// traceparent is continued all the same, W3C trace context from outside.
func TestSamplingFollowsTheDocument(t *testing.T) {
	doc := defaultDocument(t)
	doc.Tracing.SamplingPercent = 0
	useEdgeConfig(t, doc)

	// The ingress runs the document once a request goes out unsampled.
	var unsampled map[string]any
	err := localenv.Poll(t.Context(), 100*time.Millisecond, func(context.Context) error {
		agent := "e2e-unsampled-" + randomHex(6)
		expect(t, http.StatusOK, request{method: http.MethodGet, path: "/api/users/users?limit=1", token: sys.admin.Token,
			header: map[string]string{"User-Agent": agent}})
		unsampled = waitAccessLog(t, agent)
		if tp, _ := unsampled["traceparent"].(string); !strings.HasSuffix(tp, "-00") {
			return fmt.Errorf("traceparent %q is still sampled", tp)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A client's sampled trace, sent after the unsampled request: once
	// every hop's spans of it are stored, the unsampled request's would
	// be too (each process exports its spans in the order they end).
	clientTrace := randomHex(16)
	expect(t, http.StatusOK, request{method: http.MethodGet, path: "/api/users/users?limit=1", token: sys.admin.Token,
		header: map[string]string{"traceparent": "00-" + clientTrace + "-" + randomHex(8) + "-01"}})
	tree := waitTrace(t, clientTrace, func(tr trace) error {
		for _, service := range []string{"ingress", "mesh-sidecar", "users"} {
			if tr.find(func(s localenv.TraceSpan) bool { return s.Service == service }) == nil {
				return fmt.Errorf("no %s span yet", service)
			}
		}
		return nil
	})
	if root := tree.root(); root.Service != "ingress" || root.ParentID == "" {
		t.Errorf("the ingress did not continue the client's span (root %+v)\n%s", root, tree)
	}
	id, _ := unsampled["trace_id"].(string)
	if spans, err := sys.jaeger.Trace(t.Context(), id); !errors.Is(err, localenv.ErrTraceNotFound) {
		t.Errorf("the unsampled request %s left a trace (%v):\n%s", id, err, trace(spans))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSamplingIsAFraction: at 10 % the ingress starts traces for a
// fraction of the requests, not for all of them. Envoy samples on the
// request id modulo 10000; a route's percent written in millionths once
// traced every request at "1 %", which the 0 and 100 % cases could not
// see.
func TestSamplingIsAFraction(t *testing.T) {
	doc := defaultDocument(t)
	doc.Tracing.SamplingPercent = 10
	// The requests below must not meet the per-client limit, which other
	// tests of the minute share.
	doc.Defaults.RateLimit.Global.PerClient = &edgeconfig.Limit{Requests: 100_000, Per: "minute"}
	useEdgeConfig(t, doc)

	// The document is in force once a request goes out unsampled (at
	// 100 %, the default, none does); at 10 %, well within 30 s of
	// requests. The same wait fails if every request is sampled.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := localenv.Poll(ctx, 50*time.Millisecond, func(context.Context) error {
		agent := "e2e-fraction-probe-" + randomHex(6)
		expect(t, http.StatusOK, request{method: http.MethodGet, path: "/api/users/.well-known/jwks.json",
			header: map[string]string{"User-Agent": agent}})
		if tp, _ := waitAccessLog(t, agent)["traceparent"].(string); !strings.HasSuffix(tp, "-00") {
			return fmt.Errorf("traceparent %q is sampled", tp)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("no unsampled request at 10 %%: %v", err)
	}

	const n = 200
	agent := "e2e-fraction-" + randomHex(6)
	for range n {
		expect(t, http.StatusOK, request{method: http.MethodGet, path: "/api/users/.well-known/jwks.json",
			header: map[string]string{"User-Agent": agent}})
	}
	var sampled, seen int
	logCtx, cancelLog := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancelLog()
	err = localenv.Poll(logCtx, 100*time.Millisecond, func(context.Context) error {
		sampled, seen = 0, 0
		b, err := os.ReadFile(sys.ingress.LogPath())
		if err != nil {
			return err
		}
		for line := range strings.Lines(string(b)) {
			var rec map[string]any
			if !strings.Contains(line, agent) || json.Unmarshal([]byte(line), &rec) != nil || rec["user_agent"] != agent {
				continue
			}
			seen++
			if tp, _ := rec["traceparent"].(string); strings.HasSuffix(tp, "-01") {
				sampled++
			}
		}
		if seen < n {
			return fmt.Errorf("%d of %d access-log lines", seen, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of %d requests sampled at 10 %%", sampled, n)
	// 20 expected; 0 or half and more are each about 1e-9 likely.
	if sampled == 0 || sampled >= n/2 {
		t.Fatalf("%d of %d requests sampled at 10 %%, want a fraction near 20", sampled, n)
	}
}
