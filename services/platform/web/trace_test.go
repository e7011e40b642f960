package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// tracedServer is a server whose logs go to a buffer, traced by tracing.
func tracedServer(t *testing.T, tracing telemetry.Tracing) (*Server, *localenvtest.LogBuffer) {
	t.Helper()
	logs := &localenvtest.LogBuffer{}
	srv := New(Config{Service: "test", Log: telemetry.NewLogger(logs, slog.LevelInfo, "test"), Tracing: tracing})
	srv.Mount(Route{Method: http.MethodGet, Path: "/things/:id", Handler: func(c *fiber.Ctx) error {
		if c.Params("id") == "broken" {
			return errors.New("the database is gone")
		}
		return c.SendString("thing")
	}})
	return srv, logs
}

// sampledParent and unsampledParent are what the ingress sends.
const (
	ingressTrace    = "4bf92f3577b34da6a3ce929d0e0e4736"
	sampledParent   = "00-" + ingressTrace + "-00f067aa0ba902b7-01"
	unsampledParent = "00-" + ingressTrace + "-00f067aa0ba902b7-00"
)

func get(t *testing.T, srv *Server, path, traceparent string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	do(t, srv, req)
}

// Every log line of a traced request carries its trace and span ids, the
// server span's, in the trace the ingress started; its latency carries the
// trace id as an exemplar, which /metrics shows in OpenMetrics.
func TestRequestLogsAndLatencyCarryTheTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv, logs := tracedServer(t, telemetry.Tracing{Provider: tp, Propagator: propagation.TraceContext{}})

	get(t, srv, "/things/broken", sampledParent)
	ended := spans.Ended()
	if len(ended) != 1 || ended[0].Name() != "GET /things/:id" {
		t.Fatalf("spans %v, want one named GET /things/:id", ended)
	}
	server := ended[0].SpanContext()
	if server.TraceID().String() != ingressTrace {
		t.Fatalf("the server span is in trace %s, want the ingress's %s", server.TraceID(), ingressTrace)
	}
	for _, msg := range []string{"request failed", "request"} {
		recs := logs.Records(msg)
		if len(recs) != 1 {
			t.Fatalf("%d %q log lines, want 1; logs:\n%s", len(recs), msg, logs)
		}
		if recs[0]["trace_id"] != ingressTrace || recs[0]["span_id"] != server.SpanID().String() || recs[0]["request_id"] == nil {
			t.Errorf("%q log line %v lacks trace_id %s, span_id %s or request_id", msg, recs[0], ingressTrace, server.SpanID())
		}
	}

	metrics := openMetrics(t, srv)
	if want := `{trace_id="` + ingressTrace + `"}`; !strings.Contains(metrics, want) {
		t.Errorf("no exemplar %s in /metrics:\n%s", want, metrics)
	}
}

// An unsampled request has no exemplar; with tracing off, a request the
// ingress traced still logs the ingress's trace id, and one without trace
// context logs none.
func TestUntracedRequests(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv, _ := tracedServer(t, telemetry.Tracing{Provider: tp, Propagator: propagation.TraceContext{}})
	get(t, srv, "/things/1", unsampledParent)
	if metrics := openMetrics(t, srv); strings.Contains(metrics, "trace_id") {
		t.Errorf("an unsampled request left an exemplar:\n%s", metrics)
	}

	off, logs := tracedServer(t, telemetry.Tracing{Provider: noop.NewTracerProvider(), Propagator: propagation.TraceContext{}})
	get(t, off, "/things/1", sampledParent)
	get(t, off, "/things/2", "")
	recs := logs.Records("request")
	if len(recs) != 2 {
		t.Fatalf("%d request log lines, want 2:\n%s", len(recs), logs)
	}
	if recs[0]["trace_id"] != ingressTrace {
		t.Errorf("with tracing off, the log line of a request the ingress traced has trace_id %v, want %s", recs[0]["trace_id"], ingressTrace)
	}
	if id, ok := recs[1]["trace_id"]; ok {
		t.Errorf("a request without trace context logged trace_id %v", id)
	}
}

// openMetrics scrapes /metrics as Prometheus does when it wants exemplars.
func openMetrics(t *testing.T, srv *Server) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	resp, err := srv.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("/metrics answered %s to a scraper asking for OpenMetrics", ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
