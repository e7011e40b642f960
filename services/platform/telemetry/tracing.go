package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is the tracer provider and propagator a process passes to every
// component that makes spans or carries trace context. They are handed down
// explicitly rather than installed as OpenTelemetry globals.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
	shutdown   func(context.Context) error
}

// Tracer returns the tracer of the instrumentation scope name (the
// package that makes the spans). A zero Tracing traces nothing.
func (t Tracing) Tracer(name string) trace.Tracer {
	if t.Provider == nil {
		return noop.NewTracerProvider().Tracer(name)
	}
	return t.Provider.Tracer(name)
}

// Propagation returns the propagator that reads and writes trace context
// on the wire: t's, or W3C trace context and baggage when t has none, so
// that a component given a zero Tracing still carries the context on.
func (t Tracing) Propagation() propagation.TextMapPropagator {
	if t.Propagator == nil {
		return defaultPropagator
	}
	return t.Propagator
}

// Enabled reports whether spans are recorded at all. Instrumentation
// whose cost is paid before it asks the tracer (building attributes,
// walking the stack) is installed only when it is.
func (t Tracing) Enabled() bool {
	switch t.Provider.(type) {
	case nil, noop.TracerProvider:
		return false
	}
	return true
}

var defaultPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Shutdown flushes buffered spans; a no-op when tracing is off.
func (t Tracing) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// tracingRequested reports whether the standard OTEL_* variables ask for
// spans to be exported. Unset means silent: no exporter dials a collector
// that is not there and logs about it.
func tracingRequested(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	if exp := strings.ToLower(getenv("OTEL_TRACES_EXPORTER")); exp != "" {
		return exp != "none"
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewTracing builds tracing from the standard OTEL_* environment variables
// (exporter, endpoint, sampler, resource attributes). service and version
// name the resource unless OTEL_SERVICE_NAME overrides them.
func NewTracing(ctx context.Context, service, version string) (Tracing, error) {
	propagator := defaultPropagator
	if !tracingRequested(os.Getenv) {
		return Tracing{Provider: noop.NewTracerProvider(), Propagator: propagator}, nil
	}
	exporter, err := newSpanExporter(ctx, os.Getenv)
	if err != nil {
		return Tracing{}, fmt.Errorf("trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(service), semconv.ServiceVersion(version)))
	if err != nil {
		return Tracing{}, fmt.Errorf("trace resource: %w", err)
	}
	// The environment (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) wins
	// over the defaults above.
	if envRes, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, envRes); err == nil {
			res = merged
		}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return Tracing{Provider: tp, Propagator: propagator, shutdown: tp.Shutdown}, nil
}

// ChildSpansOnly wraps tp so that its tracers start a span only under a
// span that is recording. Libraries instrumented with it (pgx, Redis) then
// add spans to the requests, relays and consumers that call them, and none
// for the calls made outside any (readiness probes, the relay's polling,
// background refreshes), each of which would otherwise be a trace of one
// span, several a second.
func ChildSpansOnly(tp trace.TracerProvider) trace.TracerProvider {
	return childSpansOnly{TracerProvider: tp}
}

type childSpansOnly struct{ trace.TracerProvider }

func (p childSpansOnly) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childSpansOnlyTracer{Tracer: p.TracerProvider.Tracer(name, opts...)}
}

type childSpansOnlyTracer struct{ trace.Tracer }

func (t childSpansOnlyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if parent := trace.SpanFromContext(ctx); !parent.IsRecording() {
		// A span that is not recording ignores End, so the caller may end
		// it as if it were its own.
		return ctx, parent
	}
	return t.Tracer.Start(ctx, name, opts...)
}

// newSpanExporter picks the span exporter the standard variables name:
// OTEL_TRACES_EXPORTER otlp (the default) or console, OTLP over
// http/protobuf (the specification's default protocol). It does what
// contrib's autoexport does for spans alone: autoexport also links the
// gRPC, metric and log exporters into every binary (edge: 603 packages),
// whose code is resident in every process whether used or not.
func newSpanExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	switch exp := strings.ToLower(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "", "otlp":
	case "console":
		return stdouttrace.New()
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER %q: this build exports otlp, console or none", exp)
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if protocol != "" && protocol != "http/protobuf" {
		return nil, fmt.Errorf("OTLP protocol %q: this build sends http/protobuf only (a collector's port 4318)", protocol)
	}
	// The exporter reads the endpoint, headers, timeout and TLS from the
	// OTEL_EXPORTER_OTLP_* variables itself.
	return otlptracehttp.New(ctx)
}
