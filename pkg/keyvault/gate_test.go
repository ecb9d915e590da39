package keyvault

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// scriptedTransport answers each request with the next status of its vault's script
// (200 once the script is used up) and counts what reached it.
type scriptedTransport struct {
	mu      sync.Mutex
	script  map[string][]int
	header  http.Header
	sent    map[string]int
	block   chan struct{} // when set, every request waits for it
	peak    atomic.Int32
	current atomic.Int32
}

func (s *scriptedTransport) Do(req *http.Request) (*http.Response, error) {
	n := s.current.Add(1)
	defer s.current.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent == nil {
		s.sent = map[string]int{}
	}
	host := req.URL.Host
	s.sent[host]++
	status := 200
	if q := s.script[host]; len(q) > 0 {
		status, s.script[host] = q[0], q[1:]
	}
	if status == 0 {
		return nil, errors.New("connection reset by peer")
	}
	h := http.Header{}
	if status == 429 {
		for k, v := range s.header {
			h[k] = v
		}
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader("{}")), Request: req}, nil
}

func (s *scriptedTransport) count(host string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[host]
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func send(t *testing.T, g *Gate, tr policy.Transporter, host string) (int, error) {
	t.Helper()
	pl := runtime.NewPipeline("test", "v", runtime.PipelineOptions{PerRetry: []policy.Policy{g}},
		&policy.ClientOptions{Transport: tr, Retry: policy.RetryOptions{MaxRetries: -1}})
	req, err := runtime.NewRequest(context.Background(), http.MethodGet, "https://"+host+"/secrets/s/")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pl.Do(req)
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// TestGateHonoursRetryAfter: after a 429 with retry-after-ms nothing is sent to that
// vault until the window ends, other vaults are not held, one probe goes after the
// window, and a success resets the vault.
func TestGateHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	var skipped atomic.Int32
	g := NewGate(GateOptions{Now: clk.Now, OnSkip: func() { skipped.Add(1) }})
	tr := &scriptedTransport{script: map[string][]int{"a.vault.azure.net": {429, 429}}, header: http.Header{"Retry-After-Ms": {"1500"}}}
	if code, err := send(t, g, tr, "a.vault.azure.net"); code != 429 || err != nil {
		t.Fatalf("first: %d %v", code, err)
	}
	for range 5 {
		_, err := send(t, g, tr, "a.vault.azure.net")
		var be *BackoffError
		if !errors.As(err, &be) || !be.Throttled || !be.Until.Equal(clk.Now().Add(1500*time.Millisecond)) {
			t.Fatalf("during the window: %v", err)
		}
	}
	if code, err := send(t, g, tr, "b.vault.azure.net"); code != 200 || err != nil {
		t.Fatalf("another vault is held too: %d %v", code, err)
	}
	if got := tr.count("a.vault.azure.net"); got != 1 || skipped.Load() != 5 {
		t.Fatalf("%d requests sent in the window, %d skipped", got, skipped.Load())
	}
	clk.advance(1500 * time.Millisecond)
	if code, _ := send(t, g, tr, "a.vault.azure.net"); code != 429 { // the probe, throttled again
		t.Fatalf("probe: %d", code)
	}
	clk.advance(1500 * time.Millisecond)
	if code, err := send(t, g, tr, "a.vault.azure.net"); code != 200 || err != nil {
		t.Fatalf("probe after the second window: %d %v", code, err)
	}
	if held, _ := g.BackingOff("a.vault.azure.net"); held {
		t.Fatal("a success did not reset the vault")
	}
	if got := tr.count("a.vault.azure.net"); got != 3 {
		t.Fatalf("%d requests sent, want 3: one per window", got)
	}
}

// TestGateOneProbe: when a window ends, one request goes and the others are held until
// its answer comes back.
func TestGateOneProbe(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	g := NewGate(GateOptions{Now: clk.Now})
	tr := &scriptedTransport{script: map[string][]int{"a.vault.azure.net": {503}}}
	if code, _ := send(t, g, tr, "a.vault.azure.net"); code != 503 {
		t.Fatalf("first: %d", code)
	}
	clk.advance(time.Minute)
	tr.block = make(chan struct{})
	probe := make(chan int)
	go func() { code, _ := send(t, g, tr, "a.vault.azure.net"); probe <- code }()
	for tr.current.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 3 {
		if _, err := send(t, g, tr, "a.vault.azure.net"); !errors.Is(err, ErrBackingOff) {
			t.Fatalf("a second request went while the probe was out: %v", err)
		}
	}
	close(tr.block)
	if code := <-probe; code != 200 {
		t.Fatalf("probe: %d", code)
	}
	if code, err := send(t, g, tr, "a.vault.azure.net"); code != 200 || err != nil {
		t.Fatalf("after the probe: %d %v", code, err)
	}
}

// TestGateExponentialBackoff: consecutive 5xx answers and resets double the wait (with
// jitter in its second half), up to the maximum.
func TestGateExponentialBackoff(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	g := NewGate(GateOptions{Now: clk.Now, BackoffBase: time.Second, BackoffMax: 8 * time.Second})
	tr := &scriptedTransport{script: map[string][]int{"a.vault.azure.net": {500, 0, 502, 503, 504, 500}}}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second} {
		_, _ = send(t, g, tr, "a.vault.azure.net")
		_, until := g.BackingOff("a.vault.azure.net")
		wait := until.Sub(clk.Now())
		if wait < want/2 || wait > want {
			t.Fatalf("failure %d: wait %v, want between %v and %v", i+1, wait, want/2, want)
		}
		clk.advance(want)
	}
}

// TestGateBoundsRequestsInFlight: the node never has more requests in flight than the
// bound, whatever the callers do.
func TestGateBoundsRequestsInFlight(t *testing.T) {
	t.Parallel()
	g := NewGate(GateOptions{MaxRequestsInFlight: 3})
	tr := &scriptedTransport{block: make(chan struct{})}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = send(t, g, tr, "a.vault.azure.net") }()
	}
	for tr.current.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(tr.block)
	wg.Wait()
	if p := tr.peak.Load(); p != 3 {
		t.Fatalf("peak %d requests in flight, want the bound 3", p)
	}
}
