package keyvault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/kvinject/kvinject/pkg/contract"
)

// sourceConfig says how fake sources answer: after a delay, values of a size (else
// "<identity>:<name>"), failing some names, waiting for release when set.
type sourceConfig struct {
	delay   time.Duration
	size    int
	fail    map[string]bool
	release chan struct{}
}

// fakeSource answers secrets for one identity, counting reads and the peak of reads in
// flight.
type fakeSource struct {
	sourceConfig
	identity       string
	reads          *atomic.Int32
	inFlight, peak atomic.Int32
}

func (s *fakeSource) GetSecret(ctx context.Context, name, version string) (Secret, error) {
	s.reads.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if s.release != nil {
		<-s.release
	}
	time.Sleep(s.delay)
	if s.fail[name] {
		return Secret{}, responseError(404, `{"error":{"code":"SecretNotFound"}}`)
	}
	v := s.identity + ":" + name
	if s.size > 0 {
		v = strings.Repeat("x", s.size)
	}
	return Secret{Value: v, Version: "0123456789abcdef0123456789abcdef"}, nil
}
func (s *fakeSource) GetKey(context.Context, string, string) (Key, error) {
	return Key{}, errors.New("no")
}
func (s *fakeSource) GetCertificate(context.Context, string, string) (Certificate, error) {
	return Certificate{}, errors.New("no")
}

// testPool is a pool whose sources are fakeSources, one per (vault, identity), sharing
// one read counter.
type testPool struct {
	*Pool
	reads   atomic.Int32
	clk     *clock
	mu      sync.Mutex
	sources map[string]*fakeSource
}

func newTestPool(t *testing.T, cfg sourceConfig, opts PoolOptions) *testPool {
	t.Helper()
	tp := &testPool{clk: &clock{now: time.Unix(1_800_000_000, 0)}, sources: map[string]*fakeSource{}}
	opts.Now = tp.clk.Now
	opts.NewSource = func(vault string, cred azcore.TokenCredential, _ SourceOptions) (Source, error) {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		id := string(cred.(fakeCred))
		s := &fakeSource{sourceConfig: cfg, identity: id, reads: &tp.reads}
		tp.sources[vault+"|"+id] = s
		return s, nil
	}
	tp.Pool = NewPool(opts)
	return tp
}

// fakeCred names an identity; it is never asked for a token by a fakeSource.
type fakeCred string

func (fakeCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("not used")
}

func secrets(n int) []contract.Object {
	var out []contract.Object
	for i := range n {
		out = append(out, contract.Object{Name: fmt.Sprintf("s%02d", i), FilePermission: "0440"})
	}
	return out
}

func fetchReq(identity string, objects []contract.Object, fresh bool) FetchRequest {
	c, _ := LookupCloud("")
	return FetchRequest{Vault: "kv", Cloud: c, Identity: identity, Credential: fakeCred(identity), Describe: "identity " + identity,
		Objects: objects, Fresh: fresh, Concurrency: 4}
}

// TestPoolFetch: every object read at most Concurrency at a time, files in order with
// their modes; a failed object fails the whole volume, naming each object that failed.
func TestPoolFetch(t *testing.T) {
	t.Parallel()
	tp := newTestPool(t, sourceConfig{delay: 5 * time.Millisecond}, PoolOptions{})
	objs := secrets(20)
	got, err := tp.Fetch(t.Context(), fetchReq("A", objs, true))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	for i, f := range got.Files {
		if f.Name != objs[i].Name || string(f.Data) != "A:"+objs[i].Name || f.Mode != 0o440 || f.Version != "0123456789abcdef0123456789abcdef" {
			t.Fatalf("file %d = %+v", i, f)
		}
	}
	if p := tp.sources["kv|A"].peak.Load(); p != 4 {
		t.Errorf("peak %d reads in flight, want the volume's bound 4", p)
	}
	tp2 := newTestPool(t, sourceConfig{fail: map[string]bool{"s03": true, "s07": true}}, PoolOptions{})
	got, err = tp2.Fetch(t.Context(), fetchReq("A", objs, true))
	if got != nil {
		t.Fatal("a failed fetch returned files")
	}
	var names []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var oe *ObjectError
		if errors.As(e, &oe) {
			names = append(names, oe.Object)
		}
	}
	if strings.Join(names, ",") != "s03,s07" || !errors.Is(err, ErrNotFound) {
		t.Fatalf("errors %v", err)
	}
}

// TestPoolCoalescesAndCaches: the same object asked by several volumes of one identity
// at the same moment is read once; a refresh within ObjectTTL reads nothing; a fresh
// fetch (a first publish) reads again; after ObjectTTL a refresh reads again.
func TestPoolCoalescesAndCaches(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	tp := newTestPool(t, sourceConfig{}, PoolOptions{ObjectTTL: time.Minute})
	// A warm client: its first read is behind it (a cold one reads the first object
	// alone).
	warm, err := tp.Fetch(t.Context(), fetchReq("A", []contract.Object{{Name: "warm"}}, true))
	if err != nil {
		t.Fatal(err)
	}
	warm.Release()
	tp.sources["kv|A"].release = release
	tp.reads.Store(0)
	tp.Stats().Asked.Store(0)
	objs := secrets(3)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := tp.Fetch(context.Background(), fetchReq("A", objs, true))
			if err != nil {
				t.Error(err)
				return
			}
			f.Release()
		}()
	}
	for tp.Stats().Asked.Load() < 150 { // every volume waits on the reads in flight
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got := tp.reads.Load(); got != 3 {
		t.Fatalf("50 volumes read %d times, want once per object (3)", got)
	}
	f, err := tp.Fetch(t.Context(), fetchReq("A", objs, false))
	if err != nil || tp.reads.Load() != 3 {
		t.Fatalf("a refresh within the TTL read Key Vault: %d reads, %v", tp.reads.Load(), err)
	}
	f.Release()
	if f, err = tp.Fetch(t.Context(), fetchReq("A", objs, true)); err != nil || tp.reads.Load() != 6 {
		t.Fatalf("a fresh fetch did not read: %d reads, %v", tp.reads.Load(), err)
	}
	f.Release()
	tp.clk.advance(time.Minute)
	if f, err = tp.Fetch(t.Context(), fetchReq("A", objs, false)); err != nil || tp.reads.Load() != 9 {
		t.Fatalf("a refresh after the TTL did not read: %d reads, %v", tp.reads.Load(), err)
	}
	f.Release()
	if got := tp.Sources(); got != 1 {
		t.Fatalf("%d clients for one vault and one identity", got)
	}
}

// TestPoolRefreshRoundReadsOnce: volumes of one identity refreshing the same expired
// object at the same moment read it once, even when one of them finds the cache expired
// just as another's read completes (the check of the cache and the start of a read are
// not one step; a read that completed after a refresh began serves that refresh).
func TestPoolRefreshRoundReadsOnce(t *testing.T) {
	t.Parallel()
	tp := newTestPool(t, sourceConfig{}, PoolOptions{ObjectTTL: time.Minute})
	objs := secrets(1)
	for round := range 300 {
		tp.clk.advance(time.Minute)
		tp.reads.Store(0)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := tp.Fetch(context.Background(), fetchReq("A", objs, round == 0))
				if err != nil {
					t.Error(err)
					return
				}
				f.Release()
			}()
		}
		wg.Wait()
		if got := tp.reads.Load(); round > 0 && got != 1 {
			t.Fatalf("round %d: 8 refreshes of one expired object read it %d times, want once", round, got)
		}
	}
}

// TestPoolNeverSharesAcrossIdentities: two identities asking for the same object at the
// same moment each read it with their own client, and each gets its own answer.
func TestPoolNeverSharesAcrossIdentities(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	tp := newTestPool(t, sourceConfig{release: release}, PoolOptions{})
	objs := secrets(1)
	got := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range []string{"A", "B", "A", "B"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := tp.Fetch(context.Background(), fetchReq(id, objs, true))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if prev, ok := got[id]; ok && prev != string(f.Files[0].Data) {
				t.Errorf("identity %s got two different answers", id)
			}
			got[id] = string(f.Files[0].Data)
			mu.Unlock()
			f.Release()
		}()
	}
	for tp.Stats().Asked.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got["A"] != "A:s00" || got["B"] != "B:s00" || tp.reads.Load() != 2 || tp.Sources() != 2 {
		t.Fatalf("answers %v after %d reads with %d clients; want each identity its own", got, tp.reads.Load(), tp.Sources())
	}
	// And from the cache: B's refresh is B's object, never A's.
	f, err := tp.Fetch(t.Context(), fetchReq("B", objs, false))
	if err != nil || string(f.Files[0].Data) != "B:s00" {
		t.Fatalf("B's refresh: %v %v", f, err)
	}
}

// TestPoolBudget: a volume whose files would take more pages than it may hold fails
// with the sizes named, and stops reading at the first object that does not fit.
func TestPoolBudget(t *testing.T) {
	t.Parallel()
	tp := newTestPool(t, sourceConfig{size: 25000}, PoolOptions{})
	r := fetchReq("A", secrets(200), true)
	r.Concurrency, r.MaxBytes = 1, 4<<20/2
	f, err := tp.Fetch(t.Context(), r)
	if f != nil || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("fetch: %v, %v", f, err)
	}
	if want := `the objects do not fit in the volume: with secret "s73" the files take at least 2121728 bytes in 4096-byte pages, more than the volume's 2097152`; err.Error() != want {
		t.Fatalf("error\n%s\nwant\n%s", err, want)
	}
	if got := tp.reads.Load(); got != 74 {
		t.Fatalf("%d reads; the fetch goes on past the object that does not fit", got)
	}
}

// TestPoolBytesInFlight: the node's budget of bytes in flight holds a second volume
// until the first one releases its files.
func TestPoolBytesInFlight(t *testing.T) {
	t.Parallel()
	tp := newTestPool(t, sourceConfig{size: 4096}, PoolOptions{MaxBytesInFlight: 3 * 4096})
	first, err := tp.Fetch(t.Context(), fetchReq("A", secrets(3), true))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		f, err := tp.Fetch(context.Background(), fetchReq("B", secrets(2), true))
		f.Release()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the second volume went past the node's budget: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	first.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
