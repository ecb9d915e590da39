package keyvault

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/kvinject/kvinject/pkg/contract"
)

// Defaults of PoolOptions.
const (
	DefaultObjectTTL        = 2 * time.Minute
	DefaultMaxBytesInFlight = 64 << 20
	DefaultPoolSources      = 1024
	DefaultPoolIdleTTL      = 30 * time.Minute
	// PageSize is what a file of any size takes in a tmpfs, at least.
	PageSize = 4096
)

// ErrTooLarge is wrapped by the error of a volume whose files do not fit its budget.
var ErrTooLarge = errors.New("the objects do not fit in the volume")

// PoolOptions configures NewPool.
type PoolOptions struct {
	// Transport carries every request: one per node.
	Transport policy.Transporter
	// Gate bounds and backs off the requests of every client (nil = NewGate({})).
	Gate *Gate
	// PerRetryPolicies run on every HTTP attempt after the gate (metrics).
	PerRetryPolicies []policy.Policy
	// ObjectTTL is how long an object read for one volume serves the refreshes of the
	// others that ask for it with the same identity (0 = DefaultObjectTTL): the
	// rotation interval, so that each object is read once per interval per identity.
	ObjectTTL time.Duration
	// MaxBytesInFlight bounds the rendered bytes (in pages) held by fetches in flight,
	// node-wide (0 = DefaultMaxBytesInFlight).
	MaxBytesInFlight int64
	// MaxSources bounds the clients held, one per vault and identity (0 =
	// DefaultPoolSources); IdleTTL is how long an unused one stays (0 = DefaultPoolIdleTTL).
	MaxSources int
	IdleTTL    time.Duration
	// Retry overrides azcore's retry options (nil = no retries: the gate decides
	// when a vault is asked again).
	Retry *policy.RetryOptions
	// NewSource is the client seam (nil = NewSource).
	NewSource func(vault string, cred azcore.TokenCredential, opts SourceOptions) (Source, error)
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

// Pool is the node's Key Vault reader, shared by every volume: one client per (vault,
// identity), kept so that Key Vault's challenge is answered once and connections are
// reused; identical reads in flight coalesced; an object read within ObjectTTL reused
// by refreshes; bounds on bytes in flight. Nothing is shared across identities: every
// key holds the identity. Safe for concurrent use.
type Pool struct {
	opts  PoolOptions
	bytes *semaphore.Weighted

	mu      sync.Mutex
	lru     *list.List // of *poolSource, most recently used first
	sources map[string]*list.Element

	flight  singleflight.Group
	objMu   sync.Mutex
	objects map[objectKey]cachedObject
	swept   time.Time
	reads   atomic.Uint64 // reads completed; a cached object keeps the count its read made

	stats PoolStats
}

// PoolStats counts what the pool saved: objects served from the object cache (Hits),
// objects asked of Key Vault by a volume (Asked), the reads actually sent (Reads), and
// those answered by a read another volume had in flight (Coalesced).
type PoolStats struct {
	Hits, Asked, Reads, Coalesced atomic.Int64
}

type poolSource struct {
	key      string
	src      Source
	warm     atomic.Bool // answered once: challenge and token are done
	lastUsed time.Time
}

type objectKey struct {
	identity, vault string
	typ             contract.ObjectType
	name, version   string
}

type cachedObject struct {
	value   any // Secret, Key or Certificate
	fetched time.Time
	seq     uint64 // Pool.reads when it was stored
}

// NewPool returns an empty pool.
func NewPool(opts PoolOptions) *Pool {
	if opts.Gate == nil {
		opts.Gate = NewGate(GateOptions{})
	}
	if opts.ObjectTTL <= 0 {
		opts.ObjectTTL = DefaultObjectTTL
	}
	if opts.MaxBytesInFlight <= 0 {
		opts.MaxBytesInFlight = DefaultMaxBytesInFlight
	}
	if opts.MaxSources <= 0 {
		opts.MaxSources = DefaultPoolSources
	}
	if opts.IdleTTL <= 0 {
		opts.IdleTTL = DefaultPoolIdleTTL
	}
	if opts.Retry == nil {
		opts.Retry = &policy.RetryOptions{MaxRetries: -1}
	}
	if opts.NewSource == nil {
		opts.NewSource = NewSource
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Pool{
		opts: opts, bytes: semaphore.NewWeighted(opts.MaxBytesInFlight),
		lru: list.New(), sources: map[string]*list.Element{}, objects: map[objectKey]cachedObject{},
	}
}

// Stats returns the pool's counters.
func (p *Pool) Stats() *PoolStats { return &p.stats }

// Sources is the number of clients held.
func (p *Pool) Sources() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}

// FetchRequest is one volume's read.
type FetchRequest struct {
	// Vault and Cloud name the vault.
	Vault string
	Cloud Cloud
	// Identity is the identity's cache key (identity.Request.Key) and Credential its
	// credential; Describe names it in errors.
	Identity   string
	Credential azcore.TokenCredential
	Describe   string
	// Objects are the volume's objects.
	Objects []contract.Object
	// Fresh reads every object from Key Vault now (a first publish); otherwise an
	// object this identity read within ObjectTTL is reused (a refresh).
	Fresh bool
	// MaxBytes bounds the files, counted in pages as a tmpfs counts them (0 = none):
	// the fetch stops at the first object that does not fit.
	MaxBytes int64
	// Concurrency bounds this volume's reads in flight (values below 1 mean 1).
	Concurrency int
	// DefaultMode is the mode of objects without filePermission (0 = DefaultFileMode).
	DefaultMode uint32
}

// Fetched are a volume's files. Release gives their bytes back to the node's budget
// once written; it is safe to call twice.
type Fetched struct {
	Files   []File
	release func()
}

// Release returns the files' bytes to the node's budget.
func (f *Fetched) Release() {
	if f != nil && f.release != nil {
		f.release()
		f.release = nil
	}
}

// Pages is what n bytes take in a tmpfs: whole pages, at least one.
func Pages(n int) int64 {
	return max(1, (int64(n)+PageSize-1)/PageSize) * PageSize
}

// Fetch reads and renders every object, all or nothing: on error it returns no files,
// and the error joins one *ObjectError per object that failed (or the budget error).
func (p *Pool) Fetch(ctx context.Context, r FetchRequest) (*Fetched, error) {
	ps, err := p.source(r)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	n := max(r.Concurrency, 1)
	def := r.DefaultMode
	if def == 0 {
		def = DefaultFileMode
	}
	files := make([]File, len(r.Objects))
	errs := make([]error, len(r.Objects))
	var total atomic.Int64
	var held atomic.Int64
	release := func() { p.bytes.Release(held.Swap(0)) }
	one := func(i int) {
		o := r.Objects[i]
		data, version, err := p.readAndRender(ctx, ps, r, o)
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, ErrTooLarge) {
				return // the budget error says it all
			}
			errs[i] = classify(r.Vault, o, r.Describe, err)
			return
		}
		pages := Pages(len(data))
		if sum := total.Add(pages); r.MaxBytes > 0 && sum > r.MaxBytes {
			cancel(fmt.Errorf("%w: with %s %q the files take at least %d bytes in %d-byte pages, more than the volume's %d",
				ErrTooLarge, o.ObjectType(), o.Name, sum, PageSize, r.MaxBytes))
			return
		}
		if err := p.bytes.Acquire(ctx, pages); err != nil {
			errs[i] = classify(r.Vault, o, r.Describe, err)
			return
		}
		held.Add(pages)
		files[i] = File{Name: o.FileName(), Data: data, Mode: o.Mode(def), Object: o, Version: version}
	}
	start := 0
	if !ps.warm.Load() && n > 1 && len(r.Objects) > 2 {
		// A new client reads its first object alone: it answers Key Vault's challenge
		// and gets the token once, which the others then reuse.
		one(0)
		start = 1
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
objects:
	for i := start; i < len(r.Objects); i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrTooLarge) {
				break objects
			}
			errs[i] = classify(r.Vault, r.Objects[i], r.Describe, ctx.Err())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			one(i)
		}()
	}
	wg.Wait()
	if cause := context.Cause(ctx); errors.Is(cause, ErrTooLarge) {
		release()
		return nil, cause
	}
	if err := errors.Join(errs...); err != nil {
		release()
		return nil, err
	}
	return &Fetched{Files: files, release: release}, nil
}

func (p *Pool) readAndRender(ctx context.Context, ps *poolSource, r FetchRequest, o contract.Object) ([]byte, string, error) {
	key := objectKey{identity: r.Identity, vault: r.Cloud.VaultURL(r.Vault), typ: o.ObjectType(), name: o.Name, version: o.Version}
	v, err := p.read(ctx, ps, key, r.Fresh)
	if err != nil {
		return nil, "", err
	}
	switch x := v.(type) {
	case Key:
		b, err := RenderKey(o, x)
		return b, x.Version, err
	case Certificate:
		b, err := RenderCertificate(o, x)
		return b, x.Version, err
	case Secret:
		b, err := RenderSecret(o, x)
		return b, x.Version, err
	}
	return nil, "", fmt.Errorf("keyvault: unexpected %T", v)
}

// read returns one object as Key Vault gave it: from the cache when allowed, else by a
// read merged with any identical read in flight.
func (p *Pool) read(ctx context.Context, ps *poolSource, key objectKey, fresh bool) (any, error) {
	now, began := p.opts.Now(), p.reads.Load()
	if !fresh {
		p.objMu.Lock()
		c, ok := p.objects[key]
		p.objMu.Unlock()
		if ok && now.Sub(c.fetched) < p.opts.ObjectTTL {
			p.stats.Hits.Add(1)
			return c.value, nil
		}
	}
	sfKey := fmt.Sprintf("%q|%q|%s|%q|%q", key.identity, key.vault, key.typ, key.name, key.version)
	p.stats.Asked.Add(1)
	ch := p.flight.DoChan(sfKey, func() (any, error) {
		// Between the look into the cache above and this flight, an identical read may
		// have completed: one that completed after this call began serves it as well as
		// its own read would, fresh or not (without this, a refresh round read some
		// objects twice).
		p.objMu.Lock()
		c, ok := p.objects[key]
		p.objMu.Unlock()
		if ok && c.seq > began {
			p.stats.Hits.Add(1)
			return c.value, nil
		}
		p.stats.Reads.Add(1)
		// The read serves every volume waiting on it: it does not end when the first
		// one gives up, only after readTimeout.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
		defer cancel()
		v, err := get(rctx, ps.src, key)
		if err != nil {
			return nil, err
		}
		ps.warm.Store(true)
		p.objMu.Lock()
		p.objects[key] = cachedObject{value: v, fetched: p.opts.Now(), seq: p.reads.Add(1)}
		p.sweepLocked(p.opts.Now())
		p.objMu.Unlock()
		return v, nil
	})
	select {
	case res := <-ch:
		if res.Shared {
			p.stats.Coalesced.Add(1)
		}
		return res.Val, res.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readTimeout bounds one read from Key Vault, whoever waits for it.
const readTimeout = time.Minute

func get(ctx context.Context, src Source, key objectKey) (any, error) {
	switch key.typ {
	case contract.TypeKey:
		return src.GetKey(ctx, key.name, key.version)
	case contract.TypeCert:
		return src.GetCertificate(ctx, key.name, key.version)
	default:
		return src.GetSecret(ctx, key.name, key.version)
	}
}

// sweepLocked drops expired objects, at most once per ObjectTTL.
func (p *Pool) sweepLocked(now time.Time) {
	if now.Sub(p.swept) < p.opts.ObjectTTL {
		return
	}
	p.swept = now
	for k, c := range p.objects {
		if now.Sub(c.fetched) >= p.opts.ObjectTTL {
			delete(p.objects, k)
		}
	}
}

// CachedObjects is the number of objects held.
func (p *Pool) CachedObjects() int {
	p.objMu.Lock()
	defer p.objMu.Unlock()
	return len(p.objects)
}

// source returns the client of (vault, identity), creating it on first use.
func (p *Pool) source(r FetchRequest) (*poolSource, error) {
	key := r.Identity + "|" + r.Cloud.VaultURL(r.Vault)
	now := p.opts.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for el := p.lru.Back(); el != nil && now.Sub(el.Value.(*poolSource).lastUsed) >= p.opts.IdleTTL; el = p.lru.Back() {
		delete(p.sources, el.Value.(*poolSource).key)
		p.lru.Remove(el)
	}
	if el, ok := p.sources[key]; ok {
		ps := el.Value.(*poolSource)
		ps.lastUsed = now
		p.lru.MoveToFront(el)
		return ps, nil
	}
	src, err := p.opts.NewSource(r.Vault, r.Credential, SourceOptions{
		Cloud:            r.Cloud,
		Transport:        p.opts.Transport,
		PerRetryPolicies: append([]policy.Policy{p.opts.Gate}, p.opts.PerRetryPolicies...),
		Retry:            p.opts.Retry,
	})
	if err != nil {
		return nil, err
	}
	ps := &poolSource{key: key, src: src, lastUsed: now}
	p.sources[key] = p.lru.PushFront(ps)
	for p.lru.Len() > p.opts.MaxSources {
		el := p.lru.Back()
		delete(p.sources, el.Value.(*poolSource).key)
		p.lru.Remove(el)
	}
	return ps, nil
}
