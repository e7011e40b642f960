package localenvtest

import (
	"context"
	"errors"
	"testing"
	"time"
)

// WaitUntil is Eventually for conditions that are a plain yes or no (a
// consumer connected, an event seen), polled every 20 ms.
func WaitUntil(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, within, 20*time.Millisecond, what, func(context.Context) error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}
