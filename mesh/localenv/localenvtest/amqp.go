package localenvtest

import (
	"encoding/json"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
)

// AMQPChannel dials url and opens a channel on the test's behalf; both are
// closed when the test ends. Tests that play a publisher or a consumer
// beside the code under test use it instead of a session of their own.
func AMQPChannel(tb testing.TB, url string) *amqp.Channel {
	tb.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		tb.Fatalf("amqp dial: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatalf("amqp channel: %v", err)
	}
	return ch
}

// Publish sends msg to exchange, declared as the services declare it, with
// routing key key. It is persistent unless msg says otherwise.
func Publish(tb testing.TB, url, exchange, key string, msg amqp.Publishing) {
	tb.Helper()
	ch := AMQPChannel(tb, url)
	if err := broker.DeclareExchange(ch, exchange); err != nil {
		tb.Fatal(err)
	}
	if msg.DeliveryMode == 0 {
		msg.DeliveryMode = amqp.Persistent
	}
	if err := ch.PublishWithContext(tb.Context(), exchange, key, false, false, msg); err != nil {
		tb.Fatalf("amqp publish: %v", err)
	}
}

// PublishEvent publishes ev as the outbox relay does: its type is the
// routing key and its id the message id.
func PublishEvent(tb testing.TB, url, exchange string, ev events.Envelope) {
	tb.Helper()
	body, err := json.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	Publish(tb, url, exchange, ev.Type, amqp.Publishing{MessageId: ev.ID, ContentType: "application/json", Body: body})
}

// BindQueue declares the durable queue name bound to key on exchange, so
// persistent messages wait in it (across a broker restart too) until the
// test reads them.
func BindQueue(tb testing.TB, url, exchange, name, key string) {
	tb.Helper()
	ch := AMQPChannel(tb, url)
	if err := broker.DeclareExchange(ch, exchange); err != nil {
		tb.Fatal(err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		tb.Fatalf("amqp queue: %v", err)
	}
	if err := ch.QueueBind(name, key, exchange, false, nil); err != nil {
		tb.Fatalf("amqp bind: %v", err)
	}
}
