package telemetry

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// ExemplarTraceID is the exemplar label that holds the trace id, the name
// Grafana's Prometheus data source looks for by default.
const ExemplarTraceID = "trace_id"

// Observe records v in o. When the span of ctx is sampled, the trace id
// rides along as an exemplar, so a latency bucket links to a trace of a
// request that fell in it; /metrics shows exemplars in the OpenMetrics
// format only. Unsampled observations cost what Observe alone does.
func Observe(ctx context.Context, o prometheus.Observer, v float64) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(v, prometheus.Labels{ExemplarTraceID: sc.TraceID().String()})
			return
		}
	}
	o.Observe(v)
}
