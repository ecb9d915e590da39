package emulator

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// FaultTarget selects the Key Vault requests a fault applies to. Empty fields match
// anything: {Vault: "v"} is every request to vault v, {Vault: "v", ObjectType:
// ObjectSecret, Object: "s"} only requests for secret s (its versions included).
type FaultTarget struct {
	Vault      string
	ObjectType ObjectType
	Object     string
}

// Fault is what happens to a matching request, in this order: wait Latency, then
// reset the connection (Reset), or answer with Status (with Retry-After and/or
// retry-after-ms headers when set), or, with neither, serve the request normally
// (latency only).
type Fault struct {
	// Latency is added before the request is answered.
	Latency time.Duration
	// Status is the error status to return: 429 (Throttled), 500, 502, 503 or 504.
	Status int
	// RetryAfter, when positive, is sent as Retry-After in whole seconds (rounded up).
	RetryAfter time.Duration
	// RetryAfterMsHeader, when positive, is sent as the retry-after-ms header (in
	// milliseconds, as the header is named).
	RetryAfterMsHeader time.Duration
	// Reset closes the TCP connection with RST instead of answering.
	Reset bool
	// Chaos, when set, draws for each matching request: 429 (with the retry headers
	// above), 500, a reset, or (otherwise) the request served normally. Status and
	// Reset are ignored.
	Chaos *Chaos
	// Count is how many requests the fault applies to before it clears itself;
	// 0 means until ClearFaults or a new SetFault for the same target.
	Count int
}

// Chaos are the probabilities of a chaotic fault, each between 0 and 1, their sum at
// most 1.
type Chaos struct {
	Throttle, ServerError, Reset float64
}

// draw turns a chaotic fault into this request's: 429, 500, a reset, or none.
func (f Fault) draw() Fault {
	if f.Chaos == nil {
		return f
	}
	c := *f.Chaos
	f.Chaos, f.Status, f.Reset = nil, 0, false
	switch r := rand.Float64(); {
	case r < c.Throttle:
		f.Status = 429
	case r < c.Throttle+c.ServerError:
		f.Status = 500
	case r < c.Throttle+c.ServerError+c.Reset:
		f.Reset = true
	}
	return f
}

type faultEntry struct {
	fault     Fault
	remaining int // -1 = unlimited
}

type faultTable struct {
	mu      sync.Mutex
	entries map[FaultTarget]*faultEntry
}

func newFaultTable() *faultTable { return &faultTable{entries: map[FaultTarget]*faultEntry{}} }

func (t *faultTable) set(target FaultTarget, f Fault) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rem := f.Count
	if rem <= 0 {
		rem = -1
	}
	t.entries[target] = &faultEntry{fault: f, remaining: rem}
}

func (t *faultTable) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = map[FaultTarget]*faultEntry{}
}

// take returns the fault for a request, most specific target first, and consumes one
// use of it.
func (t *faultTable) take(vault string, typ ObjectType, object string) (Fault, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.entries) == 0 {
		return Fault{}, false
	}
	candidates := []FaultTarget{
		{vault, typ, object}, {vault, "", object}, {vault, typ, ""}, {vault, "", ""},
		{"", typ, object}, {"", "", object}, {"", typ, ""}, {"", "", ""},
	}
	for _, c := range candidates {
		e, ok := t.entries[c]
		if !ok {
			continue
		}
		f := e.fault
		if e.remaining > 0 {
			e.remaining--
			if e.remaining == 0 {
				delete(t.entries, c)
			}
		}
		return f, true
	}
	return Fault{}, false
}

// retryHeaders sets the retry headers a fault asks for.
func (f Fault) retryHeaders(h map[string][]string) {
	if f.RetryAfter > 0 {
		secs := (f.RetryAfter + time.Second - 1) / time.Second
		h["Retry-After"] = []string{strconv.FormatInt(int64(secs), 10)}
	}
	if f.RetryAfterMsHeader > 0 {
		h["Retry-After-Ms"] = []string{strconv.FormatInt(f.RetryAfterMsHeader.Milliseconds(), 10)}
	}
}
