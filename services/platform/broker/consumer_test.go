package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/backoff"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.RabbitMQ))
}

// fastRetry keeps the tests' redeliveries and reconnections quick.
var fastRetry = backoff.Policy{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}

// handled records what a handler saw, and fails an event id while told to.
type handled struct {
	mu       sync.Mutex
	calls    map[string]int
	events   map[string]events.Envelope
	failures map[string]int   // id -> calls still to fail
	discard  map[string]error // id -> Discard error to return
}

func newHandled() *handled {
	return &handled{calls: map[string]int{}, events: map[string]events.Envelope{}, failures: map[string]int{}, discard: map[string]error{}}
}

func (h *handled) handle(_ context.Context, ev events.Envelope) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls[ev.ID]++
	if err, ok := h.discard[ev.ID]; ok {
		return broker.Discard(err)
	}
	if h.failures[ev.ID] > 0 {
		h.failures[ev.ID]--
		return errors.New("a dependency is down")
	}
	h.events[ev.ID] = ev
	return nil
}

func (h *handled) callsOf(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[id]
}

func (h *handled) got(id string) (events.Envelope, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev, ok := h.events[id]
	return ev, ok
}

// run starts c and returns a stop that cancels it and requires Run to
// return nil.
func run(t *testing.T, c *broker.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	localenvtest.WaitUntil(t, 30*time.Second, "the consumer to connect", c.Connected)
	return stop
}

func newEvent(t *testing.T, typ string) events.Envelope {
	t.Helper()
	ev, err := events.New(typ, "portico/test", "things/1", map[string]int{"id": 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// queueDepth is how many messages wait in queue, unconsumed.
func queueDepth(t *testing.T, url, queue string) int {
	t.Helper()
	q, err := localenvtest.AMQPChannel(t, url).QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

// outcome reads broker_consumer_deliveries_total for queue and outcome.
func outcome(t *testing.T, reg *prometheus.Registry, queue, outcome string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "broker_consumer_deliveries_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["queue"] == queue && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// testConsumer is a consumer of a queue of its own on the shared broker.
type testConsumer struct {
	*broker.Consumer
	url, exchange, queue string
	reg                  *prometheus.Registry
	seen                 *handled
}

func newTestConsumer(t *testing.T, url string) *testConsumer {
	t.Helper()
	tc := &testConsumer{
		url: url, exchange: "test." + uuid.NewString(), queue: "test." + uuid.NewString(),
		reg: prometheus.NewRegistry(), seen: newHandled(),
	}
	c, err := broker.NewConsumer(broker.ConsumerConfig{
		URL: url, Exchange: tc.exchange, Queue: tc.queue, Bindings: []string{"thing.*"},
		Handle: tc.seen.handle, Retry: fastRetry, Registerer: tc.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	tc.Consumer = c
	return tc
}

func (tc *testConsumer) outcome(t *testing.T, o string) float64 {
	t.Helper()
	return outcome(t, tc.reg, tc.queue, o)
}

// An event is decoded, handled and acknowledged; events of unbound types
// never reach the handler.
func TestConsumerHandlesBoundEvents(t *testing.T) {
	tc := newTestConsumer(t, localenvtest.AMQPURL(t))
	run(t, tc.Consumer)
	unbound := newEvent(t, "other.created")
	localenvtest.PublishEvent(t, tc.url, tc.exchange, unbound)
	ev := newEvent(t, "thing.created")
	localenvtest.PublishEvent(t, tc.url, tc.exchange, ev)

	localenvtest.WaitUntil(t, 10*time.Second, "the event", func() bool { _, ok := tc.seen.got(ev.ID); return ok })
	got, _ := tc.seen.got(ev.ID)
	if got.Type != ev.Type || got.Subject != ev.Subject || string(got.Data) != string(ev.Data) || !got.Time.Equal(ev.Time) {
		t.Errorf("handled %+v, want %+v", got, ev)
	}
	localenvtest.WaitUntil(t, 10*time.Second, "the ack to be counted", func() bool { return tc.outcome(t, broker.OutcomeAcked) == 1 })
	if err := tc.Run(t.Context()); err == nil {
		t.Error("a second Run of a running consumer was not refused")
	}
	if n := tc.seen.callsOf(unbound.ID); n != 0 {
		t.Errorf("an unbound event was handled %d times", n)
	}
	if n := queueDepth(t, tc.url, tc.queue); n != 0 {
		t.Errorf("%d messages left in the queue after the ack", n)
	}
}

// A failed handling is requeued and tried again until it succeeds; a
// malformed message and a discarded event are rejected for good, and
// neither holds up the events behind them.
func TestConsumerSettlesEveryOutcome(t *testing.T) {
	tc := newTestConsumer(t, localenvtest.AMQPURL(t))
	stop := run(t, tc.Consumer)

	retried, discarded, after := newEvent(t, "thing.updated"), newEvent(t, "thing.deleted"), newEvent(t, "thing.created")
	tc.seen.mu.Lock()
	tc.seen.failures[retried.ID] = 2
	tc.seen.discard[discarded.ID] = errors.New("unknown schema version")
	tc.seen.mu.Unlock()

	localenvtest.Publish(t, tc.url, tc.exchange, "thing.created", amqp.Publishing{Body: []byte("{not json")})
	localenvtest.Publish(t, tc.url, tc.exchange, "thing.created", amqp.Publishing{Body: []byte(`{"type":"thing.created"}`)}) // no id
	localenvtest.PublishEvent(t, tc.url, tc.exchange, retried)
	localenvtest.PublishEvent(t, tc.url, tc.exchange, discarded)
	localenvtest.PublishEvent(t, tc.url, tc.exchange, after)

	localenvtest.WaitUntil(t, 10*time.Second, "the retried event to succeed", func() bool { _, ok := tc.seen.got(retried.ID); return ok })
	localenvtest.WaitUntil(t, 10*time.Second, "the event behind the others", func() bool { _, ok := tc.seen.got(after.ID); return ok })
	localenvtest.WaitUntil(t, 10*time.Second, "every delivery to be settled", func() bool { return tc.outcome(t, broker.OutcomeAcked) == 2 })
	stop()

	if n := tc.seen.callsOf(retried.ID); n != 3 {
		t.Errorf("the failing event was handled %d times, want 3 (two failures, then success)", n)
	}
	if n := tc.seen.callsOf(discarded.ID); n != 1 {
		t.Errorf("the discarded event was handled %d times, want 1", n)
	}
	for o, want := range map[string]float64{
		broker.OutcomeAcked: 2, broker.OutcomeRequeued: 2, broker.OutcomeMalformed: 2, broker.OutcomeDiscarded: 1,
	} {
		if got := tc.outcome(t, o); got != want {
			t.Errorf("outcome %s: %v, want %v", o, got, want)
		}
	}
	// Rejected, not requeued: nothing waits for a next consumer.
	if n := queueDepth(t, tc.url, tc.queue); n != 0 {
		t.Errorf("%d messages left in the queue", n)
	}
}

// The consumer reconnects by itself after a broker restart, and its
// durable queue keeps what was published while no consumer ran.
func TestConsumerSurvivesBrokerRestart(t *testing.T) {
	rmq := localenvtest.StartRabbitMQ(t)
	tc := newTestConsumer(t, rmq.URL())
	stop := run(t, tc.Consumer)

	ctx := context.Background()
	if err := rmq.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	localenvtest.WaitUntil(t, 10*time.Second, "the consumer to notice", func() bool { return !tc.Connected() })
	if err := tc.Ping(ctx); err == nil {
		t.Error("Ping succeeded while the broker was down")
	}
	if err := rmq.Start(ctx); err != nil {
		t.Fatal(err)
	}
	localenvtest.WaitUntil(t, 30*time.Second, "the consumer to reconnect", tc.Connected)
	afterRestart := newEvent(t, "thing.created")
	localenvtest.PublishEvent(t, tc.url, tc.exchange, afterRestart)
	localenvtest.WaitUntil(t, 10*time.Second, "an event after the restart", func() bool { _, ok := tc.seen.got(afterRestart.ID); return ok })

	stop()
	if tc.Connected() {
		t.Error("still connected after Run returned")
	}
	whileAway := newEvent(t, "thing.updated")
	localenvtest.PublishEvent(t, tc.url, tc.exchange, whileAway)
	run(t, tc.Consumer) // the same consumer may run again once stopped
	localenvtest.WaitUntil(t, 10*time.Second, "the event published while away", func() bool { _, ok := tc.seen.got(whileAway.ID); return ok })
}

// Run waits for an absent broker without failing, and returns nil as soon
// as its context ends.
func TestConsumerStopsWhileWaitingForTheBroker(t *testing.T) {
	reg := prometheus.NewRegistry()
	logs := &localenvtest.LogBuffer{}
	c, err := broker.NewConsumer(broker.ConsumerConfig{
		URL: "amqp://guest:guest@127.0.0.1:1/", Queue: "q", Bindings: []string{"x.*"},
		Handle: func(context.Context, events.Envelope) error { return nil }, Retry: fastRetry, Registerer: reg,
		Log: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	localenvtest.WaitUntil(t, 10*time.Second, "a failed connection attempt", func() bool { return logs.Contains("reconnecting") })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if c.Connected() {
		t.Error("connected to a broker that is not there")
	}

	// A second consumer shares the registry: its series differ by queue.
	if _, err := broker.NewConsumer(broker.ConsumerConfig{
		URL: "amqp://x", Queue: "other", Bindings: []string{"x.*"},
		Handle: func(context.Context, events.Envelope) error { return nil }, Registerer: reg,
	}); err != nil {
		t.Errorf("a second consumer on one registry: %v", err)
	}
	for _, cfg := range []broker.ConsumerConfig{
		{Queue: "q", Bindings: []string{"x.*"}, Handle: func(context.Context, events.Envelope) error { return nil }},
		{URL: "amqp://x", Bindings: []string{"x.*"}, Handle: func(context.Context, events.Envelope) error { return nil }},
		{URL: "amqp://x", Queue: "q", Handle: func(context.Context, events.Envelope) error { return nil }},
		{URL: "amqp://x", Queue: "q", Bindings: []string{"x.*"}},
	} {
		if _, err := broker.NewConsumer(cfg); err == nil {
			t.Errorf("%+v was accepted", cfg)
		}
	}
}
