package httpcache_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// A traced read through the edge: its Redis commands are spans under the
// edge's request span, so is its origin call, whose context the origin
// receives,
// and the latencies (origin and request) carry the trace id as an
// exemplar. Redis calls outside a request (a readiness ping) make no span.
func TestTracedReadThroughTheEdge(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracing := telemetry.Tracing{Provider: tp, Propagator: propagation.TraceContext{}}

	var (
		mu       sync.Mutex
		received []string // traceparent of each origin request
	)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received = append(received, r.Header.Get("Traceparent"))
		mu.Unlock()
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write([]byte("product 1"))
	})
	e := newEdge(t, o, func(eo *edgeOptions) { eo.tracing = tracing })

	miss := e.get(t, "/products/1")
	expect(t, "first read", miss, http.StatusOK, "MISS", "product 1")
	request := spanNamed(t, spans, "GET /*")
	traceID := request.SpanContext().TraceID()

	// Commands are children of the request span; a new connection's
	// handshake (hello, client setinfo) is a child of the command that
	// opened it.
	parentOf := map[trace.SpanID]trace.SpanID{}
	for _, s := range spans.Ended() {
		parentOf[s.SpanContext().SpanID()] = s.Parent().SpanID()
	}
	underRequest := func(id trace.SpanID) bool {
		for ; id.IsValid(); id = parentOf[id] {
			if id == request.SpanContext().SpanID() {
				return true
			}
		}
		return false
	}
	var redisSpans []string
	for _, s := range spans.Ended() {
		if attrOf(s, "db.system") != "redis" {
			continue
		}
		redisSpans = append(redisSpans, s.Name())
		if s.SpanContext().TraceID() != traceID || !underRequest(s.Parent().SpanID()) {
			t.Errorf("redis span %q (trace %s, parent %s) is not under the request span %s", s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), request.SpanContext().SpanID())
		}
		if stmt := attrOf(s, "db.statement"); stmt != "" {
			t.Errorf("redis span %q records its arguments: %q", s.Name(), stmt)
		}
	}
	if len(redisSpans) == 0 {
		t.Fatal("the read made no redis span")
	}
	t.Logf("redis spans of a miss: %q", redisSpans)

	// The origin call is a client span under the request's, and the
	// origin receives its context.
	call := spanNamed(t, spans, "GET")
	if call.SpanKind() != trace.SpanKindClient || call.Parent().SpanID() != request.SpanContext().SpanID() {
		t.Errorf("the origin call is a %s span under %s, want a client span under the request's", call.SpanKind(), call.Parent().SpanID())
	}
	for k, want := range map[string]string{"portico.upstream": "svc", "http.request.method": "GET", "url.path": "/products/1", "http.response.status_code": "200"} {
		if got := attrOf(call, k); got != want {
			t.Errorf("origin call span: %s = %q, want %q", k, got, want)
		}
	}
	mu.Lock()
	toOrigin := received[0]
	mu.Unlock()
	if sc := parseTraceparent(t, toOrigin); sc.TraceID() != traceID || sc.SpanID() != call.SpanContext().SpanID() {
		t.Errorf("the origin received traceparent %q, want trace %s under span %s", toOrigin, traceID, call.SpanContext().SpanID())
	}
	if got := exemplarTraceIDs(t, e.reg, "edge_origin_duration_seconds"); !got[traceID.String()] {
		t.Errorf("edge_origin_duration_seconds exemplars %v lack the request's trace %s", got, traceID)
	}
	if got := exemplarTraceIDs(t, e.reg, "http_request_duration_seconds"); !got[traceID.String()] {
		t.Errorf("http_request_duration_seconds exemplars %v lack the request's trace %s", got, traceID)
	}

	before := len(spans.Ended())
	if err := e.store.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := spans.Ended(); len(after) != before {
		t.Errorf("a ping outside any request made span %q", after[len(after)-1].Name())
	}
}

func spanNamed(t *testing.T, spans *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var names []string
	for _, s := range spans.Ended() {
		if s.Name() == name {
			return s
		}
		names = append(names, s.Name())
	}
	t.Fatalf("no span %q among %q", name, names)
	return nil
}

func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func parseTraceparent(t *testing.T, tp string) trace.SpanContext {
	t.Helper()
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		t.Fatalf("traceparent %q is not valid", tp)
	}
	return sc
}

// exemplarTraceIDs returns the trace ids of the exemplars of a histogram
// family.
func exemplarTraceIDs(t *testing.T, reg *prometheus.Registry, name string) map[string]bool {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, b := range m.GetHistogram().GetBucket() {
				for _, l := range b.GetExemplar().GetLabel() {
					if l.GetName() == telemetry.ExemplarTraceID {
						ids[l.GetValue()] = true
					}
				}
			}
		}
	}
	return ids
}
