package testkit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	t.Parallel()
	n := 0
	if err := Poll(t.Context(), time.Millisecond, time.Second, "third call", func(context.Context) error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("err %v after %d calls", err, n)
	}
	err := Poll(t.Context(), time.Millisecond, 20*time.Millisecond, "never", func(context.Context) error { return errors.New("still no") })
	if err == nil || !strings.Contains(err.Error(), "never: not within 20ms: still no") {
		t.Fatalf("timeout error %v", err)
	}
	calls := 0
	gone := errors.New("process exited")
	err = Poll(t.Context(), time.Millisecond, time.Minute, "stops", func(context.Context) error { calls++; return Stop(gone) })
	if !errors.Is(err, gone) || calls != 1 {
		t.Fatalf("stop: %v after %d calls", err, calls)
	}
}
