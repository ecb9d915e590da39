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
