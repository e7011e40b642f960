package localenvtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// WaitUntil polls cond every 20 ms until it holds, and fails the test if
// within passes first: for conditions that are a plain yes or no (a
// consumer connected, an event seen).
func WaitUntil(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), within)
	defer cancel()
	if err := localenv.Poll(ctx, 20*time.Millisecond, func(context.Context) error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		tb.Fatalf("%s: not within %v: %v", what, within, err)
	}
}
