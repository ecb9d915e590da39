package identity

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

func TestNMICredential(t *testing.T) {
	t.Parallel()
	var gotPath, gotPod, gotNS string
	status := http.StatusOK
	body := `{"token":{"access_token":"nmi-access-token","expires_in":"3599","expires_on":"1900000000","resource":"https://vault.azure.net","token_type":"Bearer"},"clientid":"` + clientID + `"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotPod, gotNS = r.URL.RequestURI(), r.Header.Get("podname"), r.Header.Get("podns")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	c := NewNMICredential(NMIOptions{Endpoint: srv.URL, PodName: "web", PodNamespace: "shop"})
	tok, err := c.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Token != "nmi-access-token" || !tok.ExpiresOn.Equal(time.Unix(1900000000, 0)) || c.ClientID() != clientID {
		t.Fatalf("token %+v", tok)
	}
	if gotPath != "/host/token/?resource=https%3A%2F%2Fvault.azure.net" || gotPod != "web" || gotNS != "shop" {
		t.Fatalf("request %s podname=%s podns=%s", gotPath, gotPod, gotNS)
	}
	for _, tc := range []struct {
		status int
		body   string
		msg    string
	}{
		{404, "no identity", "NMI answered 404: no identity is assigned to pod shop/web"},
		{403, "failed", "NMI answered 403: it could not get a token for pod shop/web's identity"},
		{500, "boom", "NMI answered 500 for pod shop/web"},
		{200, `{"token":{"access_token":""},"clientid":"x"}`, "has no access_token or clientid"},
		{200, `{"token":{"access_token":"secret-token"}}`, "has no access_token or clientid"},
	} {
		status, body = tc.status, tc.body
		c := NewNMICredential(NMIOptions{Endpoint: srv.URL, PodName: "web", PodNamespace: "shop"})
		_, err := c.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
		if !errors.Is(err, ErrNMI) || !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "secret-token") {
			t.Errorf("status %d: err = %v, want ErrNMI containing %q", tc.status, err, tc.msg)
		}
	}
}

// TestNMICredentialCachesTokens: a token is reused until RefreshBefore its expiry; then
// NMI is asked again.
func TestNMICredentialCachesTokens(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	expiresOn := time.Now().Add(time.Hour)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprintf(w, `{"token":{"access_token":"t%d","expires_on":"%d"},"clientid":"%s"}`, calls.Load(), expiresOn.Unix(), clientID)
	}))
	t.Cleanup(srv.Close)
	c := NewNMICredential(NMIOptions{Endpoint: srv.URL, PodName: "web", PodNamespace: "shop"})
	scope := policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}}
	for range 5 {
		tok, err := c.GetToken(t.Context(), scope)
		if err != nil || tok.Token != "t1" {
			t.Fatalf("%v %v", tok, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d NMI calls for five tokens, want 1", calls.Load())
	}
	expiresOn = time.Now().Add(RefreshBefore - time.Second) // the next answer expires soon
	c2 := NewNMICredential(NMIOptions{Endpoint: srv.URL, PodName: "web", PodNamespace: "shop"})
	_, _ = c2.GetToken(t.Context(), scope)
	if tok, _ := c2.GetToken(t.Context(), scope); tok.Token != "t3" || calls.Load() != 3 {
		t.Fatalf("a token about to expire was reused: %v after %d calls", tok.Token, calls.Load())
	}
}
