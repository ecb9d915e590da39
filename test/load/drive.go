package load

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Drive posts body to t from concurrency clients, each with its own keep-alive
// connection, for warmup and then for duration, and measures the reviews started in
// the second phase. A review counts as an error unless the answer is HTTP 200 with an
// allowed JSON-patch response. Drive returns when every client has stopped: no later
// than warmup + duration + timeout. Clients speak HTTP/1.1, as the webhook serves.
func Drive(ctx context.Context, t *Target, body []byte, concurrency int, warmup, duration, timeout time.Duration) (*Result, error) {
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)

	workers := make([]*worker, concurrency)
	for i := range workers {
		tlsCfg := t.TLS.Clone()
		workers[i] = &worker{
			url:  t.URL,
			body: body,
			client: &http.Client{Timeout: timeout, Transport: &http.Transport{
				TLSClientConfig:     tlsCfg,
				MaxIdleConnsPerHost: 1,
				DisableCompression:  true,
			}},
			latencies: make([]time.Duration, 0, 1024),
		}
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx, measureFrom, end) }()
	}

	// Sample CPU use over the measured phase only.
	var before, after cpuSample
	if sleepUntil(ctx, measureFrom) {
		before = sampleCPU()
		if sleepUntil(ctx, end) {
			after = sampleCPU()
		}
	}
	wg.Wait()
	for _, w := range workers {
		w.client.CloseIdleConnections()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	r := &Result{Concurrency: concurrency, Duration: duration, InProcess: t.InProcess}
	for _, w := range workers {
		r.Latencies = append(r.Latencies, w.latencies...)
		r.Errors += w.errors
		if r.FirstError == "" {
			r.FirstError = w.firstError
		}
		if r.Proto == "" {
			r.Proto = w.proto
		}
	}
	r.ProcessCPU, r.MachineCPU = after.since(before)
	r.sort()
	return r, nil
}

// worker is one client: one connection, one review at a time.
type worker struct {
	url    string
	body   []byte
	client *http.Client
	buf    bytes.Buffer

	latencies  []time.Duration
	errors     int
	firstError string
	proto      string // of the first answer
}

func (w *worker) run(ctx context.Context, measureFrom, end time.Time) {
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		err := w.review(ctx)
		d := time.Since(t0)
		if t0.Before(measureFrom) {
			continue
		}
		if err != nil {
			w.errors++
			if w.firstError == "" {
				w.firstError = err.Error()
			}
			continue
		}
		w.latencies = append(w.latencies, d)
	}
}

// Markers of an allowed JSON-patch AdmissionReview response, as controller-runtime
// encodes it.
var (
	markAllowed = []byte(`"allowed":true`)
	markPatch   = []byte(`"patchType":"JSONPatch"`)
)

func (w *worker) review(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(w.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	w.buf.Reset()
	_, err = w.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if w.proto == "" {
		w.proto = resp.Proto
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, w.buf.Bytes())
	}
	if b := w.buf.Bytes(); !bytes.Contains(b, markAllowed) || !bytes.Contains(b, markPatch) {
		return fmt.Errorf("not an allowed patch: %.200s", b)
	}
	return nil
}

// sleepUntil sleeps until t, or returns false when ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
