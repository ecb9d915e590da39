package identity

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
)

func wiRequest(sa, token string, exp time.Time) Request {
	return Request{Mode: ModeWorkloadIdentity, TenantID: tenant, ClientID: clientID, PodNamespace: "shop", PodName: "web",
		ServiceAccountToken: token, ServiceAccountSubject: "system:serviceaccount:shop:" + sa, ServiceAccountExpiry: exp}
}

// TestCacheOneCredentialPerIdentity: the same identity gets the same credential (its
// token is reused); any difference in what makes the identity gets another one, and
// the keys hold no secret.
func TestCacheOneCredentialPerIdentity(t *testing.T) {
	t.Parallel()
	c := NewCache(CacheOptions{})
	exp := time.Now().Add(time.Hour)
	sp := func(secret string) Request {
		return Request{Mode: ModeServicePrincipal, TenantID: tenant, ClientID: spID, ClientSecret: secret}
	}
	pi := func(uid string) Request {
		return Request{Mode: ModePodIdentity, PodNamespace: "shop", PodName: "web", PodUID: uid}
	}
	reqs := []Request{
		wiRequest("web-sa", "token-1", exp),
		wiRequest("admin", "token-2", exp),
		sp("sp-secret-one"), sp("sp-secret-two"),
		pi("uid-1"), pi("uid-2"),
	}
	keys := map[string]bool{}
	for _, r := range reqs {
		k1, c1, err := c.Credential(r, cloud.AzurePublic)
		if err != nil {
			t.Fatal(err)
		}
		k2, c2, _ := c.Credential(r, cloud.AzurePublic)
		if k1 != k2 || c1 != c2 {
			t.Fatalf("%s: a second publish got another credential", r.Describe())
		}
		if keys[k1] {
			t.Fatalf("two identities share the key %q", k1)
		}
		keys[k1] = true
		for _, secret := range []string{"sp-secret-one", "sp-secret-two", "token-1", "token-2"} {
			if strings.Contains(k1, secret) {
				t.Fatalf("key %q holds a credential", k1)
			}
		}
	}
	if _, other, _ := c.Credential(reqs[0], cloud.AzureGovernment); other == nil || c.Len() != len(reqs)+1 {
		t.Fatalf("another cloud shares the credential: %d entries", c.Len())
	}
}

// TestCacheBoundedAndIdle: the least recently used identity goes first, and an identity
// no publish asked for within IdleTTL is dropped.
func TestCacheBoundedAndIdle(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := NewCache(CacheOptions{MaxEntries: 2, IdleTTL: time.Minute, Now: clock})
	pi := func(uid string) Request {
		return Request{Mode: ModePodIdentity, PodNamespace: "shop", PodName: "web", PodUID: uid}
	}
	_, a, _ := c.Credential(pi("a"), cloud.AzurePublic)
	_, _, _ = c.Credential(pi("b"), cloud.AzurePublic)
	_, _, _ = c.Credential(pi("a"), cloud.AzurePublic) // a is the most recently used
	_, _, _ = c.Credential(pi("c"), cloud.AzurePublic) // b goes
	if c.Len() != 2 {
		t.Fatalf("%d entries, want the bound 2", c.Len())
	}
	if _, again, _ := c.Credential(pi("a"), cloud.AzurePublic); again != a {
		t.Fatal("the most recently used identity was dropped")
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if c.Len() != 0 {
		t.Fatalf("%d entries after IdleTTL, want 0", c.Len())
	}
}

// TestCacheAssertionIsTheFreshestToken: a cached workload identity exchanges the newest
// service-account token the kubelet has handed over, not the first one.
func TestCacheAssertionIsTheFreshestToken(t *testing.T) {
	t.Parallel()
	c := NewCache(CacheOptions{})
	now := time.Now()
	key, _, _ := c.Credential(wiRequest("web-sa", "old-token", now.Add(10*time.Minute)), cloud.AzurePublic)
	_, _, _ = c.Credential(wiRequest("web-sa", "new-token", now.Add(time.Hour)), cloud.AzurePublic)
	_, _, _ = c.Credential(wiRequest("web-sa", "older-token", now.Add(5*time.Minute)), cloud.AzurePublic)
	c.mu.Lock()
	e := c.byID[key].Value.(*cacheEntry)
	c.mu.Unlock()
	if got, _ := e.currentAssertion(context.Background()); got != "new-token" {
		t.Fatalf("assertion %q, want the token that expires last", got)
	}
}
