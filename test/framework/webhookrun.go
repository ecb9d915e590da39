package framework

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/pkg/webhook"
)

// Webhook is the webhook program's Run, in this process.
type Webhook struct {
	stop func()
	done chan error
}

// Stop stops the webhook and waits up to 30 s for it; it is safe to call twice.
func (w *Webhook) Stop() { w.stop() }

// Done is closed with Run's result when the webhook stops.
func (w *Webhook) Done() <-chan error { return w.done }

// RunWebhook runs (*webhook.Options).Run, exactly as the binary does after Validate,
// with log as its logger, until the test ends or Stop is called. opts must pass
// Validate and serve its probes on a host:port (HealthProbeBindAddress). It returns
// once /readyz answers 200: the server is up and its informers are synced.
func RunWebhook(t *testing.T, opts *webhook.Options, log logr.Logger) *Webhook {
	t.Helper()
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), log))
	result := make(chan error, 1)
	w := &Webhook{done: make(chan error, 1)}
	go func() {
		err := opts.Run(ctx)
		result <- err
		w.done <- err
		close(w.done)
	}()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-result:
				if err != nil {
					t.Errorf("webhook: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("webhook did not stop within 30 s")
			}
		})
	}
	t.Cleanup(w.stop)
	readyz := "http://" + opts.HealthProbeBindAddress + "/readyz?verbose"
	testkit.Eventually(t, 30*time.Second, "webhook ready", func(ctx context.Context) error {
		select {
		case err := <-result:
			result <- err
			return testkit.Stop(fmt.Errorf("webhook stopped before it was ready: %v", err))
		default:
		}
		return ready(ctx, readyz)
	})
	return w
}

func ready(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: HTTP %d: %s", resp.StatusCode, body)
	}
	return nil
}
