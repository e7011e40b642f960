package localenvtest

import (
	"context"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// Eventually calls check every interval until it succeeds, and fails the
// test with the last error if within passes first. It is localenv.Poll for
// tests: check may call t.Fatal, as it runs on the test's goroutine.
func Eventually(t testing.TB, within, every time.Duration, what string, check func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	if err := localenv.Poll(ctx, every, check); err != nil {
		t.Fatalf("%s: not within %v: %v", what, within, err)
	}
}
