package emulator

import "sync"

// Key identifies a request counter: the vault, the object named in the path ("" for
// requests such as listing all secrets), and the caller, the client ID (appid) of a
// valid access token ("" for unauthenticated requests and refused tokens).
type Key struct {
	Vault  string
	Object string
	Caller string
}

type counterTable struct {
	mu sync.Mutex
	m  map[Key]int
}

func newCounterTable() *counterTable { return &counterTable{m: map[Key]int{}} }

func (c *counterTable) inc(k Key) {
	c.mu.Lock()
	c.m[k]++
	c.mu.Unlock()
}

func (c *counterTable) get(k Key) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *counterTable) total(vault, object string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.m {
		if k.Vault == vault && k.Object == object {
			n += v
		}
	}
	return n
}

func (c *counterTable) snapshot() map[Key]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Key]int, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

func (c *counterTable) reset() {
	c.mu.Lock()
	c.m = map[Key]int{}
	c.mu.Unlock()
}

// Totals sums every counter: what reached the emulator since the last ResetTotals.
type Totals struct {
	// KeyVaultReads are authenticated Key Vault requests; KeyVaultChallenges the
	// unauthenticated ones (Key Vault's challenge round trip).
	KeyVaultReads, KeyVaultChallenges int
	// TokenRequests are Entra ID token requests; NMIRequests are NMI's.
	TokenRequests, NMIRequests int
	// TLSHandshakes are new connections to the HTTPS listener.
	TLSHandshakes int
}

func sum(m map[Key]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Totals returns the sums of every counter.
func (e *Emulator) Totals() Totals {
	t := Totals{TokenRequests: sum(e.tokenCounts.snapshot()), NMIRequests: sum(e.nmiCounts.snapshot()), TLSHandshakes: e.Connections().TLSHandshakes}
	for k, n := range e.counters.snapshot() {
		if k.Caller == "" {
			t.KeyVaultChallenges += n
		} else {
			t.KeyVaultReads += n
		}
	}
	return t
}

// ResetTotals sets every counter Totals sums to zero.
func (e *Emulator) ResetTotals() {
	e.counters.reset()
	e.tokenCounts.reset()
	e.nmiCounts.reset()
	e.ResetConnections()
}
