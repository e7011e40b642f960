package purge

import (
	"slices"
	"testing"
	"time"

	"github.com/portico-mesh/portico/services/platform/events"
)

func TestTagsFor(t *testing.T) {
	tests := []struct {
		typ, subject, data string
		want               []string
	}{
		{"product.updated", "products/42", `{}`, []string{"product:42", "products"}},
		{"product.created", "products/7", `{}`, []string{"product:7", "products"}},
		{"product.deleted", "", `{"id": 9}`, []string{"product:9", "products"}},
		{"product.deleted", "products/x", `{}`, []string{"products"}},
		// Users' reads are never cached: their events purge nothing.
		{"user.updated", "users/3", `{}`, nil},
		{"order.created", "orders/1", `{}`, nil},
	}
	for _, tc := range tests {
		got := TagsFor(events.Envelope{Type: tc.typ, Subject: tc.subject, Data: []byte(tc.data)})
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: %v, want %v", tc.typ, tc.subject, got, tc.want)
		}
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	base, ceiling := 100*time.Millisecond, time.Second
	prev := time.Duration(0)
	for attempt := 1; attempt <= 10; attempt++ {
		d := backoff(attempt, base, ceiling)
		if d > ceiling || d < base*8/10 {
			t.Fatalf("attempt %d: %v out of [%v, %v]", attempt, d, base*8/10, ceiling)
		}
		if attempt <= 3 && d < prev {
			t.Errorf("attempt %d: %v shorter than %v", attempt, d, prev)
		}
		prev = d
	}
}
