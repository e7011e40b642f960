// Package events defines the envelope of Portico's domain events and the
// message that carries one over the broker.
package events

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// SpecVersion is the CloudEvents version the envelope follows: its JSON is a
// CloudEvents 1.0 structured-mode event, so standard tooling can read it.
const SpecVersion = "1.0"

// Envelope is one domain event. ID is unique per event and is what
// consumers deduplicate on: delivery is at least once.
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Source          string          `json:"source"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// New builds an envelope with a fresh time-ordered id.
func New(typ, source, subject string, data any, now time.Time) (Envelope, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("event id: %w", err)
	}
	body, err := json.Marshal(data)
	if err != nil {
		return Envelope{}, fmt.Errorf("event %s data: %w", typ, err)
	}
	return Envelope{
		SpecVersion:     SpecVersion,
		ID:              id.String(),
		Type:            typ,
		Source:          source,
		Subject:         subject,
		Time:            now.UTC(),
		DataContentType: "application/json",
		Data:            body,
	}, nil
}

// Message is an event as it travels: the routing key is the event type and
// headers carry trace context.
type Message struct {
	ID      string
	Type    string
	Time    time.Time
	Body    []byte
	Headers map[string]string
}
