package identity

import (
	"container/list"
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Defaults of CacheOptions.
const (
	DefaultCacheEntries = 1024
	DefaultCacheIdleTTL = 30 * time.Minute
)

// CacheOptions configures NewCache.
type CacheOptions struct {
	// Transport sends every credential's requests to Entra ID: one per node, shared.
	Transport policy.Transporter
	// NMIEndpoint and NMIClient reach AAD Pod Identity's NMI.
	NMIEndpoint string
	NMIClient   *http.Client
	// MaxEntries bounds the identities held (0 = DefaultCacheEntries); the least
	// recently used goes first.
	MaxEntries int
	// IdleTTL is how long an identity no publish asked for stays (0 = DefaultCacheIdleTTL).
	IdleTTL time.Duration
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

// Cache holds one credential per identity (Request.Key), so that its token is reused
// across publishes until shortly before it expires instead of being requested every
// time. Nothing is shared across identities: a request only ever gets the credential
// of its own key. It is bounded, idle entries expire, and it is safe for concurrent use.
type Cache struct {
	opts CacheOptions
	mu   sync.Mutex
	lru  *list.List // of *cacheEntry, most recently used first
	byID map[string]*list.Element
}

type cacheEntry struct {
	key      string
	cred     azcore.TokenCredential
	lastUsed time.Time
	// assertion is the freshest service-account token of a workload identity.
	assertionMu sync.Mutex
	assertion   string
	assertExp   time.Time
}

// NewCache returns an empty cache.
func NewCache(opts CacheOptions) *Cache {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultCacheEntries
	}
	if opts.IdleTTL <= 0 {
		opts.IdleTTL = DefaultCacheIdleTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{opts: opts, lru: list.New(), byID: map[string]*list.Element{}}
}

// Credential returns the credential of r's identity in cloud c and its cache key,
// creating it on first use. For workload identity the kubelet's newest token becomes
// the credential's client assertion.
func (c *Cache) Credential(r Request, cl cloud.Configuration) (string, azcore.TokenCredential, error) {
	key := r.Key(cl.ActiveDirectoryAuthorityHost)
	now := c.opts.Now()
	c.mu.Lock()
	c.expireLocked(now)
	if el, ok := c.byID[key]; ok {
		e := el.Value.(*cacheEntry)
		e.lastUsed = now
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		e.offer(r)
		return key, e.cred, nil
	}
	c.mu.Unlock()

	e := &cacheEntry{key: key, lastUsed: now}
	e.offer(r)
	cred, err := NewCredential(r, Options{
		Cloud: cl, Transport: c.opts.Transport, NMIEndpoint: c.opts.NMIEndpoint, NMIClient: c.opts.NMIClient,
		Assertion: e.currentAssertion,
	})
	if err != nil {
		return "", nil, err
	}
	e.cred = cred

	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[key]; ok { // another publish got there first: use its entry
		prev := el.Value.(*cacheEntry)
		prev.offer(r)
		c.lru.MoveToFront(el)
		return key, prev.cred, nil
	}
	c.byID[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.opts.MaxEntries {
		c.removeLocked(c.lru.Back())
	}
	return key, cred, nil
}

// Len is the number of identities held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(c.opts.Now())
	return c.lru.Len()
}

func (c *Cache) expireLocked(now time.Time) {
	for el := c.lru.Back(); el != nil; {
		e := el.Value.(*cacheEntry)
		if now.Sub(e.lastUsed) < c.opts.IdleTTL {
			return
		}
		prev := el.Prev()
		c.removeLocked(el)
		el = prev
	}
}

func (c *Cache) removeLocked(el *list.Element) {
	delete(c.byID, el.Value.(*cacheEntry).key)
	c.lru.Remove(el)
}

// offer keeps r's service-account token if it outlives the one held.
func (e *cacheEntry) offer(r Request) {
	if r.Mode != ModeWorkloadIdentity || r.ServiceAccountToken == "" {
		return
	}
	e.assertionMu.Lock()
	defer e.assertionMu.Unlock()
	if e.assertion == "" || !r.ServiceAccountExpiry.Before(e.assertExp) {
		e.assertion, e.assertExp = r.ServiceAccountToken, r.ServiceAccountExpiry
	}
}

func (e *cacheEntry) currentAssertion(context.Context) (string, error) {
	e.assertionMu.Lock()
	defer e.assertionMu.Unlock()
	return e.assertion, nil
}
