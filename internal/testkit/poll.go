package testkit

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// PollInterval is how often Eventually and Poll check their condition.
const PollInterval = 50 * time.Millisecond

// Poll calls check at once and then every interval until it returns nil, ctx ends or
// timeout passes. It returns nil, or an error naming what and check's last error. A
// check that returns Stop(err) ends the polling at once with err.
func Poll(ctx context.Context, interval, timeout time.Duration, what string, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		last = check(ctx)
		var s stopError
		if errors.As(last, &s) {
			return false, s.err
		}
		return last == nil, nil
	})
	if err == nil {
		return nil
	}
	var s stopError
	if errors.As(last, &s) {
		return fmt.Errorf("%s: %w", what, s.err)
	}
	if last == nil {
		last = err
	}
	return fmt.Errorf("%s: not within %v: %w", what, timeout, last)
}

// Stop wraps err so that Poll and Eventually give up at once: the condition can no
// longer become true (a process exited, say).
func Stop(err error) error { return stopError{err} }

type stopError struct{ err error }

func (s stopError) Error() string { return s.err.Error() }
func (s stopError) Unwrap() error { return s.err }

// Eventually polls check every PollInterval until it returns nil, and fails the test
// with what and check's last error if that takes longer than timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, check func(context.Context) error) {
	t.Helper()
	if err := Poll(t.Context(), PollInterval, timeout, what, check); err != nil {
		t.Fatal(err)
	}
}
