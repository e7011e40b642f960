package broker

import amqp "github.com/rabbitmq/amqp091-go"

// amqpHeaders lets a propagator read and write trace context (W3C
// traceparent, tracestate, baggage) in a message's AMQP headers. Values
// that are not strings are not trace context and are skipped.
type amqpHeaders amqp.Table

func (h amqpHeaders) Get(key string) string {
	v, _ := h[key].(string)
	return v
}

func (h amqpHeaders) Set(key, value string) { h[key] = value }

func (h amqpHeaders) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}
