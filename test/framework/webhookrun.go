package framework

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kvinject/kvinject/pkg/webhook"
)

// Webhook is the webhook program's Run, in this process.
type Webhook struct {
	stop func()
}

// Stop stops the webhook and waits up to 30 s for it; it is safe to call twice.
func (w *Webhook) Stop() { w.stop() }

// RunWebhook runs webhook.Run with cfg, which must have passed Complete and serve its
// probes on a host:port (cfg.HealthAddr), until the test ends or Stop is called. It
// returns once /readyz answers 200: the server is up and its informers are synced.
func RunWebhook(t *testing.T, cfg webhook.Config, opts webhook.Options) *Webhook {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- webhook.Run(ctx, cfg, opts) }()
	var once sync.Once
	w := &Webhook{stop: func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("webhook: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("webhook did not stop within 30 s")
			}
		})
	}}
	t.Cleanup(w.stop)

	readyz := "http://" + cfg.HealthAddr + "/readyz?verbose"
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ready(readyz)
		if err == nil {
			return w
		}
		select {
		case err := <-done:
			t.Fatalf("webhook stopped before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook not ready within 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ready(url string) error {
	resp, err := http.Get(url)
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
