package emulator

import (
	"strconv"
	"testing"
	"time"
)

// TestFaultsRetriedBySDK checks that the SDK's default retry policy recovers from each
// fault and that the counters show exactly the extra calls.
func TestFaultsRetriedBySDK(t *testing.T) {
	e := startSDK(t)
	cred := secretCred(t, e, tenant1, readerID, "reader-secret")
	secret := FaultTarget{Vault: testVault, ObjectType: ObjectSecret, Object: "plain"}
	tests := []struct {
		name        string
		target      FaultTarget
		fault       Fault
		wantCalls   int // authenticated calls for the secret
		minDuration time.Duration
		wantStatus  int // 0 = the SDK succeeds
	}{
		{name: "429 retry-after-ms", target: secret, fault: Fault{Status: 429, RetryAfterMsHeader: 20 * time.Millisecond, Count: 2}, wantCalls: 3},
		{name: "429 Retry-After", target: secret, fault: Fault{Status: 429, RetryAfter: time.Second, Count: 1}, wantCalls: 2, minDuration: time.Second},
		{name: "500", target: secret, fault: Fault{Status: 500, RetryAfterMsHeader: 10 * time.Millisecond, Count: 1}, wantCalls: 2},
		{name: "503", target: secret, fault: Fault{Status: 503, RetryAfterMsHeader: 10 * time.Millisecond, Count: 2}, wantCalls: 3},
		{name: "503 with the SDK's own backoff", target: secret, fault: Fault{Status: 503, Count: 1}, wantCalls: 2},
		{name: "connection reset", target: secret, fault: Fault{Reset: true, Count: 1}, wantCalls: 2},
		{name: "latency only", target: FaultTarget{Vault: testVault}, fault: Fault{Latency: 300 * time.Millisecond, Count: 1}, wantCalls: 1, minDuration: 300 * time.Millisecond},
		{name: "fault on another object", target: FaultTarget{Vault: testVault, Object: "typed"}, fault: Fault{Status: 500}, wantCalls: 1},
		{name: "persistent 503: the SDK gives up after 3 retries", target: secret,
			fault: Fault{Status: 503, RetryAfterMsHeader: 10 * time.Millisecond}, wantCalls: 4, wantStatus: 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(e.ClearFaults)
			c := secretsClient(t, e, testVault, cred)
			e.ResetCounters()
			e.SetFault(tc.target, tc.fault)
			start := time.Now()
			resp, err := c.GetSecret(t.Context(), "plain", "", nil)
			took := time.Since(start)
			if tc.wantStatus != 0 {
				if re := responseError(t, err); re.StatusCode != tc.wantStatus {
					t.Fatalf("status %d, want %d", re.StatusCode, tc.wantStatus)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if *resp.Value != "plain-value" {
				t.Fatalf("value %q", *resp.Value)
			}
			if got := e.Requests(Key{Vault: testVault, Object: "plain", Caller: readerID}); got != tc.wantCalls {
				t.Errorf("authenticated calls = %d, want %d", got, tc.wantCalls)
			}
			if got := e.Requests(Key{Vault: testVault, Object: "plain"}); got != 1 {
				t.Errorf("challenge calls = %d, want 1", got)
			}
			if got := e.RequestsTotal(testVault, "plain"); got != tc.wantCalls+1 {
				t.Errorf("total = %d, want %d", got, tc.wantCalls+1)
			}
			if took < tc.minDuration {
				t.Errorf("took %s, want at least %s", took, tc.minDuration)
			}
		})
	}
}

func TestFaultTable(t *testing.T) {
	ft := newFaultTable()
	ft.set(FaultTarget{Vault: "v"}, Fault{Status: 500})
	ft.set(FaultTarget{Vault: "v", ObjectType: ObjectSecret, Object: "s"}, Fault{Status: 429, Count: 1})
	tests := []struct {
		typ        ObjectType
		object     string
		wantStatus int
		wantOK     bool
	}{
		{ObjectSecret, "s", 429, true}, // most specific, consumed
		{ObjectSecret, "s", 500, true}, // falls back to the vault fault
		{ObjectKey, "k", 500, true},
	}
	for i, tc := range tests {
		f, ok := ft.take("v", tc.typ, tc.object)
		if ok != tc.wantOK || f.Status != tc.wantStatus {
			t.Errorf("%d: got %v %d, want %v %d", i, ok, f.Status, tc.wantOK, tc.wantStatus)
		}
	}
	if _, ok := ft.take("w", ObjectSecret, "s"); ok {
		t.Errorf("fault applied to another vault")
	}
	ft.clear()
	if _, ok := ft.take("v", ObjectSecret, "s"); ok {
		t.Errorf("fault after clear")
	}
}

// TestConcurrentCounting checks that concurrent requests are all counted, and that a
// counted fault hits exactly Count requests under concurrency.
func TestConcurrentCounting(t *testing.T) {
	e := startSDK(t)
	c := secretsClient(t, e, testVault, secretCred(t, e, tenant1, readerID, "reader-secret"))
	if _, err := c.GetSecret(t.Context(), "plain", "", nil); err != nil { // challenge and token
		t.Fatal(err)
	}
	e.ResetCounters()
	e.SetFault(FaultTarget{Vault: testVault}, Fault{Status: 429, RetryAfterMsHeader: 5 * time.Millisecond, Count: 5})
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.GetSecret(t.Context(), "plain", "", nil)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := e.Requests(Key{Vault: testVault, Object: "plain", Caller: readerID}); got != n+5 {
		t.Errorf("requests = %d, want %d", got, n+5)
	}
	if total := len(e.Counters()); total != 1 {
		t.Errorf("counters %v", e.Counters())
	}
}

// TestChaos: a chaotic fault answers about the asked share of requests with each
// failure and serves the rest.
func TestChaos(t *testing.T) {
	t.Parallel()
	f := Fault{Chaos: &Chaos{Throttle: 0.3, ServerError: 0.2, Reset: 0.1}, RetryAfter: time.Second}
	counts := map[string]int{}
	const n = 20000
	for range n {
		d := f.draw()
		switch {
		case d.Reset:
			counts["reset"]++
		case d.Status != 0:
			counts[strconv.Itoa(d.Status)]++
		default:
			counts["served"]++
		}
		if d.Chaos != nil || d.RetryAfter != time.Second {
			t.Fatalf("drawn fault %+v", d)
		}
	}
	for k, want := range map[string]float64{"429": 0.3, "500": 0.2, "reset": 0.1, "served": 0.4} {
		if got := float64(counts[k]) / n; got < want-0.02 || got > want+0.02 {
			t.Errorf("%s: %.3f of requests, want about %.1f", k, got, want)
		}
	}
}
