package emulator

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Options.Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestClockDrivesExpiry checks that tokens issued by the emulator expire by its clock.
func TestClockDrivesExpiry(t *testing.T) {
	clock := &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	seed, err := LoadSeed("testdata/sdk.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := startWith(t, Options{Seed: seed, Clock: clock.Now})
	tok, err := e.MintToken(TokenOptions{Tenant: tenant1, ClientID: readerID})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		advance    time.Duration
		wantStatus int
	}{
		{name: "fresh", wantStatus: 200},
		{name: "just before expiry", advance: DefaultTokenLifetime - time.Second, wantStatus: 200},
		{name: "expired", advance: 2 * time.Second, wantStatus: 401},
	}
	for _, tc := range tests {
		clock.Add(tc.advance)
		if resp, body := kvGet(t, e, "/secrets/plain/", tok); resp.StatusCode != tc.wantStatus {
			t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.wantStatus, body)
		}
	}
	// Object timestamps follow the clock too.
	v, err := e.SetSecret(testVault, "plain", "later", SecretOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.state.mu.RLock()
	created := e.state.vaults[testVault].objects[ObjectSecret]["plain"].find(v).created
	e.state.mu.RUnlock()
	if want := clock.Now().Truncate(time.Second); !created.Equal(want) {
		t.Errorf("created %s, want %s", created, want)
	}
}
