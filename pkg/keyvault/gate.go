package keyvault

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Defaults of GateOptions.
const (
	DefaultMaxRequestsInFlight = 64
	DefaultBackoffBase         = time.Second
	DefaultBackoffMax          = time.Minute
	// MaxRetryAfter bounds how long a Retry-After can hold a vault.
	MaxRetryAfter = 10 * time.Minute
)

// ErrBackingOff is wrapped by the error of a request the gate did not send because
// its vault is backing off.
var ErrBackingOff = errors.New("backing off")

// BackoffError is a request not sent: the vault answered 429 or failed recently, and
// the node waits before asking it again.
type BackoffError struct {
	// Host is the vault's host; Until is when the next request may go.
	Host  string
	Until time.Time
	// Throttled is true when the vault answered 429 (else 5xx or no answer).
	Throttled bool
}

func (e *BackoffError) Error() string {
	why := "failed"
	if e.Throttled {
		why = "throttled the node (429)"
	}
	return fmt.Sprintf("not sent: %s %s and the node is backing off until %s", e.Host, why, e.Until.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrBackingOff) true.
func (e *BackoffError) Unwrap() error { return ErrBackingOff }

// GateOptions configures NewGate.
type GateOptions struct {
	// MaxRequestsInFlight bounds the Key Vault requests in flight on the node, all
	// vaults and volumes together (0 = DefaultMaxRequestsInFlight).
	MaxRequestsInFlight int
	// BackoffBase and BackoffMax bound the exponential backoff after 5xx answers and
	// failed connections (0 = the defaults).
	BackoffBase, BackoffMax time.Duration
	// Now is the clock (nil = time.Now).
	Now func() time.Time
	// OnSkip is called for each request not sent because its vault is backing off.
	OnSkip func()
}

// Gate is the node's one door to Key Vault, an azcore per-retry policy every vault
// client shares. It bounds the requests in flight node-wide, and keeps one backoff per
// vault: after a 429 it waits Retry-After (retry-after-ms, x-ms-retry-after-ms), after
// a 5xx or a failed connection it waits exponentially longer with jitter. While a vault
// backs off no request to it is sent; when the wait is over one request (the probe)
// goes, and the others wait for its answer, so a throttled vault sees at most one
// request per window from the node. Any other answer (2xx, 401, 403, 404) resets the
// vault. Safe for concurrent use.
type Gate struct {
	opts  GateOptions
	slots chan struct{}
	mu    sync.Mutex
	vault map[string]*vaultState
}

type vaultState struct {
	failures  int
	until     time.Time
	probing   bool
	throttled bool
}

// NewGate returns a gate with no vault backing off.
func NewGate(opts GateOptions) *Gate {
	if opts.MaxRequestsInFlight <= 0 {
		opts.MaxRequestsInFlight = DefaultMaxRequestsInFlight
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = DefaultBackoffBase
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Gate{opts: opts, slots: make(chan struct{}, opts.MaxRequestsInFlight), vault: map[string]*vaultState{}}
}

// Do implements policy.Policy.
func (g *Gate) Do(req *policy.Request) (*http.Response, error) {
	host := req.Raw().URL.Host
	if err := g.admit(host); err != nil {
		if g.opts.OnSkip != nil {
			g.opts.OnSkip()
		}
		return nil, err
	}
	ctx := req.Raw().Context()
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		g.observe(host, nil, ctx.Err(), true)
		return nil, ctx.Err()
	}
	resp, err := req.Next()
	<-g.slots
	g.observe(host, resp, err, ctx.Err() != nil)
	return resp, err
}

// BackingOff reports whether requests to host are held, and until when.
func (g *Gate) BackingOff(host string) (bool, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.vault[host]
	if s == nil || s.failures == 0 {
		return false, time.Time{}
	}
	return true, s.until
}

// admit lets a request to host go, or says why not.
func (g *Gate) admit(host string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.vault[host]
	if s == nil || s.failures == 0 {
		return nil
	}
	if g.opts.Now().Before(s.until) || s.probing {
		return &BackoffError{Host: host, Until: s.until, Throttled: s.throttled}
	}
	s.probing = true
	return nil
}

// observe records the outcome of a request to host. A request its caller cancelled
// says nothing about the vault.
func (g *Gate) observe(host string, resp *http.Response, err error, cancelled bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.vault[host]
	if s == nil {
		s = &vaultState{}
		g.vault[host] = s
	}
	s.probing = false
	switch {
	case cancelled:
	case err != nil:
		g.failLocked(s, 0, false)
	case resp.StatusCode == http.StatusTooManyRequests:
		g.failLocked(s, retryAfter(resp), true)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		g.failLocked(s, 0, false)
	default:
		delete(g.vault, host)
	}
}

func (g *Gate) failLocked(s *vaultState, wait time.Duration, throttled bool) {
	s.failures++
	s.throttled = throttled
	if wait <= 0 {
		// Exponential, with the second half jittered so that nodes do not come back
		// in step.
		d := g.opts.BackoffBase << min(s.failures-1, 20)
		if d <= 0 || d > g.opts.BackoffMax {
			d = g.opts.BackoffMax
		}
		wait = d/2 + rand.N(d/2+1)
	}
	s.until = g.opts.Now().Add(min(wait, MaxRetryAfter))
}

// retryAfter reads Key Vault's retry headers, most precise first; 0 without one.
func retryAfter(resp *http.Response) time.Duration {
	for _, h := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if v := resp.Header.Get(h); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	if v := resp.Header.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s > 0 {
			return time.Duration(s) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return time.Until(t)
		}
	}
	return 0
}
