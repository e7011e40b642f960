package purge_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/edge/purge"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.RabbitMQ, localenvtest.Redis))
}

// The edge's purge of an event is in the trace of the write that caused
// it: its process span is the child of the relay's publish span, itself
// the child of the write's, and its Redis commands are under the process
// span; the purge lag carries the trace id as an exemplar.
func TestPurgeContinuesTheTraceOfTheWrite(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracing := telemetry.Tracing{Provider: tp, Propagator: propagation.TraceContext{}}
	url := localenvtest.AMQPURL(t)
	exchange, queue := "test."+uuid.NewString(), "edge.test-"+uuid.NewString()

	client, err := httpcache.NewRedisClient("redis://"+localenvtest.RedisAddr(t)+"/0", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	if err := httpcache.TraceRedis(client, tracing); err != nil {
		t.Fatal(err)
	}
	store, err := httpcache.NewStore(httpcache.StoreConfig{Client: client, Prefix: "test:" + uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := purge.NewConsumer(purge.Config{
		URL: url, Exchange: exchange, Queue: queue, Purger: store, Registerer: reg, Tracing: tracing,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	localenvtest.WaitUntil(t, 30*time.Second, "the consumer to connect", c.Connected)

	// The write: its span's context is what the outbox stores.
	_, write := tp.Tracer("test").Start(context.Background(), "PUT /products/:id")
	stored := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpan(context.Background(), write), stored)
	write.End()
	ev := productEvent(t, "product.updated", "products/5")
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	pub := broker.NewPublisher(broker.PublisherConfig{URL: url, Exchange: exchange, Source: "test", Tracing: tracing})
	t.Cleanup(func() { _ = pub.Close() })
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	if n, err := pub.Publish(pctx, []events.Message{{ID: ev.ID, Type: ev.Type, Time: ev.Time, Body: body, Headers: stored}}); err != nil || n != 1 {
		t.Fatalf("publish: %d confirmed, %v", n, err)
	}

	var process, publish sdktrace.ReadOnlySpan
	localenvtest.WaitUntil(t, 10*time.Second, "the purge's span", func() bool {
		for _, s := range spans.Ended() {
			switch s.Name() {
			case "process " + queue:
				process = s
			case "publish " + exchange:
				publish = s
			}
		}
		return process != nil && publish != nil
	})
	traceID := write.SpanContext().TraceID()
	if publish.Parent().SpanID() != write.SpanContext().SpanID() || process.Parent().SpanID() != publish.SpanContext().SpanID() {
		t.Errorf("write %s -> publish (parent %s) %s -> process (parent %s): not a chain",
			write.SpanContext().SpanID(), publish.Parent().SpanID(), publish.SpanContext().SpanID(), process.Parent().SpanID())
	}
	if process.SpanContext().TraceID() != traceID {
		t.Errorf("the purge is in trace %s, want the write's %s", process.SpanContext().TraceID(), traceID)
	}
	purges := 0
	for _, s := range spans.Ended() {
		if s.Parent().SpanID() == process.SpanContext().SpanID() {
			purges++
		}
	}
	if purges == 0 {
		t.Error("the purge's Redis commands made no span under its process span")
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() != "edge_purge_lag_seconds" {
			continue
		}
		for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
			for _, l := range b.GetExemplar().GetLabel() {
				found = found || (l.GetName() == telemetry.ExemplarTraceID && l.GetValue() == traceID.String())
			}
		}
	}
	if !found {
		t.Errorf("edge_purge_lag_seconds has no exemplar of trace %s", traceID)
	}
}
