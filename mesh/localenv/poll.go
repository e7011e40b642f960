package localenv

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// pollAttempt bounds one call of Poll's function.
const pollAttempt = 5 * time.Second

// stopPolling marks an error that ends Poll at once.
type stopPolling struct{ error }

// StopPolling wraps err so that Poll returns it at once instead of trying
// again (a process exited, say).
func StopPolling(err error) error { return stopPolling{err} }

// Poll calls f every interval until it succeeds, returns an error made by
// StopPolling, or ctx ends. Each call gets at most 5 s; the error after
// ctx ends names the last failure.
func Poll(ctx context.Context, every time.Duration, f func(context.Context) error) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, pollAttempt)
		err := f(attempt)
		cancel()
		if err == nil {
			return nil
		}
		var stop stopPolling
		if errors.As(err, &stop) {
			return stop.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}
