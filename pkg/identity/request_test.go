package identity

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvinject/kvinject/pkg/contract"
)

const (
	tenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	clientID = "2c1e5f3a-9b7d-4e2f-8a61-0d3c4b5a6e71"
	spID     = "5d7e9f1a-2b3c-4d5e-8f6a-7b8c9d0e1f2a"
	jwt      = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDp3ZWItc2EiLCJleHAiOjE5MDAwMDAwMDB9.c2lnbmF0dXJl"
	otherJWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDphZG1pbiIsImV4cCI6MTkwMDAwMDAwMH0.c2lnbmF0dXJl" // another service account of the namespace
	tokens   = `{"api://AzureADTokenExchange":{"token":"` + jwt + `","expirationTimestamp":"2026-11-27T08:00:00Z"}}`
)

var pod = map[string]string{contract.ContextPodName: "web", contract.ContextPodNamespace: "shop", contract.ContextPodUID: "uid-1", contract.ContextServiceAccount: "web-sa"}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestSelect(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		attrs    Attributes
		vc       map[string]string
		secrets  map[string]string
		want     Request
		err      error
		msg      string
		audience string
	}{
		{name: "pod identity", attrs: Attributes{UsePodIdentity: "true", ClientID: clientID}, vc: pod,
			want: Request{Mode: ModePodIdentity, PodName: "web", PodNamespace: "shop", PodUID: "uid-1"}},
		{name: "pod identity without pod info", attrs: Attributes{UsePodIdentity: "true"}, vc: nil,
			err: ErrInvalid, msg: "podInfoOnMount"},
		{name: "workload identity, token in volume context", attrs: Attributes{ClientID: clientID, TenantID: tenant}, vc: with(pod, contract.ContextTokens, tokens),
			want: Request{Mode: ModeWorkloadIdentity, TenantID: tenant, ClientID: clientID, PodName: "web", PodNamespace: "shop", PodUID: "uid-1", ServiceAccountToken: jwt, ServiceAccountSubject: "system:serviceaccount:shop:web-sa", ServiceAccountExpiry: time.Unix(1900000000, 0)}},
		{name: "workload identity, secrets first", attrs: Attributes{ClientID: clientID, TenantID: tenant, UsePodIdentity: "false"},
			vc:      with(pod, contract.ContextTokens, `{"api://AzureADTokenExchange":{"token":"stale"}}`),
			secrets: map[string]string{contract.ContextTokens: tokens},
			want:    Request{Mode: ModeWorkloadIdentity, TenantID: tenant, ClientID: clientID, PodName: "web", PodNamespace: "shop", PodUID: "uid-1", ServiceAccountToken: jwt, ServiceAccountSubject: "system:serviceaccount:shop:web-sa", ServiceAccountExpiry: time.Unix(1900000000, 0)}},
		{name: "workload identity without tokens", attrs: Attributes{ClientID: clientID, TenantID: tenant}, vc: pod,
			err: ErrMissingToken, msg: "add tokenRequests"},
		{name: "workload identity, other audience only", attrs: Attributes{ClientID: clientID, TenantID: tenant}, vc: with(pod, contract.ContextTokens, `{"other":{"token":"`+jwt+`"}}`),
			err: ErrMissingToken, msg: "for audience"},
		{name: "workload identity, malformed tokens", attrs: Attributes{ClientID: clientID, TenantID: tenant}, vc: with(pod, contract.ContextTokens, `{"api://AzureADTokenExchange":`+jwt),
			err: ErrInvalid, msg: "not a JSON map"},
		{name: "workload identity without tenant", attrs: Attributes{ClientID: clientID}, vc: with(pod, contract.ContextTokens, tokens),
			err: ErrInvalid, msg: "tenantId is required"},
		{name: "client ID with a slash", attrs: Attributes{ClientID: "a/b", TenantID: tenant}, vc: with(pod, contract.ContextTokens, tokens),
			err: ErrInvalid, msg: "clientID"},
		{name: "service principal", attrs: Attributes{TenantID: tenant}, vc: pod, secrets: map[string]string{contract.SecretClientID: spID, contract.SecretClientSecret: "s3cr3t-value"},
			want: Request{Mode: ModeServicePrincipal, TenantID: tenant, ClientID: spID, PodName: "web", PodNamespace: "shop", PodUID: "uid-1", ClientSecret: "s3cr3t-value"}},
		{name: "service principal with swapped keys", attrs: Attributes{TenantID: tenant}, vc: pod, secrets: map[string]string{contract.SecretClientID: "s3cr3t-value", contract.SecretClientSecret: spID},
			err: ErrInvalid, msg: `check that "clientid" and "clientsecret" are not swapped`},
		{name: "workload identity, configured audience", attrs: Attributes{ClientID: clientID, TenantID: tenant}, audience: "api://custom",
			vc:   with(pod, contract.ContextTokens, `{"api://custom":{"token":"`+jwt+`"}}`),
			want: Request{Mode: ModeWorkloadIdentity, TenantID: tenant, ClientID: clientID, PodName: "web", PodNamespace: "shop", PodUID: "uid-1", ServiceAccountToken: jwt, ServiceAccountSubject: "system:serviceaccount:shop:web-sa", ServiceAccountExpiry: time.Unix(1900000000, 0)}},
		{name: "workload identity, default audience when another is configured", attrs: Attributes{ClientID: clientID, TenantID: tenant}, audience: "api://custom",
			vc: with(pod, contract.ContextTokens, tokens), err: ErrMissingToken, msg: `for audience "api://custom"`},
		{name: "workload identity, token of another service account", attrs: Attributes{ClientID: clientID, TenantID: tenant},
			vc: with(pod, contract.ContextTokens, `{"api://AzureADTokenExchange":{"token":"`+otherJWT+`"}}`), err: ErrInvalid, msg: "the service-account token is not pod shop/web's: it is not for service account web-sa"},
		{name: "workload identity, token that is not a JWT", attrs: Attributes{ClientID: clientID, TenantID: tenant},
			vc: with(pod, contract.ContextTokens, `{"api://AzureADTokenExchange":{"token":"s3cr3t-opaque"}}`), err: ErrInvalid, msg: "not a JWT"},
		{name: "workload identity without the service account's name", attrs: Attributes{ClientID: clientID, TenantID: tenant},
			vc: with(pod, contract.ContextServiceAccount, "", contract.ContextTokens, tokens), err: ErrInvalid, msg: "set podInfoOnMount"},
		{name: "service principal without secret", attrs: Attributes{TenantID: tenant}, vc: pod, secrets: map[string]string{contract.SecretClientID: spID},
			err: ErrInvalid, msg: "must hold both"},
		{name: "VM identity", attrs: Attributes{UseVMManagedIdentity: "true", TenantID: tenant}, vc: pod,
			err: ErrNodeIdentity, msg: "node's managed identity"},
		{name: "user-assigned VM identity with pod identity", attrs: Attributes{UsePodIdentity: "true", UserAssignedIdentityID: clientID}, vc: pod,
			err: ErrNodeIdentity},
		{name: "nothing", attrs: Attributes{TenantID: tenant}, vc: pod, err: ErrNoIdentity, msg: "names no identity"},
		{name: "bad bool", attrs: Attributes{UsePodIdentity: "yes"}, vc: pod, err: ErrInvalid, msg: `"true" or "false"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Select(tc.attrs, tc.vc, tc.secrets, tc.audience)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %v, want %v containing %q", err, tc.err, tc.msg)
				}
				if strings.Contains(err.Error(), jwt) || strings.Contains(err.Error(), otherJWT) || strings.Contains(err.Error(), "s3cr3t") {
					t.Fatal("the error quotes a credential")
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Select = %+v, %v\nwant %+v", got, err, tc.want)
			}
			if d := got.Describe(); strings.Contains(d, jwt) || strings.Contains(d, "s3cr3t") {
				t.Fatalf("Describe leaks a credential: %s", d)
			}
		})
	}
}

// FuzzParseServiceAccountTokens: never panics, and an error never quotes the input.
func FuzzParseServiceAccountTokens(f *testing.F) {
	f.Add(tokens)
	f.Fuzz(func(t *testing.T, raw string) {
		m, err := ParseServiceAccountTokens(raw)
		if err != nil {
			if len(raw) > 8 && strings.Contains(err.Error(), raw) {
				t.Fatalf("the error quotes the input")
			}
			return
		}
		_ = m[contract.DefaultTokenAudience].Token
	})
}

// FuzzSelect: never panics; errors never contain the token or the client secret; an
// accepted request always has a mode, and never the node's identity.
func FuzzSelect(f *testing.F) {
	f.Add("true", clientID, tenant, tokens, spID)
	f.Fuzz(func(t *testing.T, usePod, client, tenantID, rawTokens, spClient string) {
		secret := "fuzz-client-secret-value"
		r, err := Select(Attributes{UsePodIdentity: usePod, ClientID: client, TenantID: tenantID},
			with(pod, contract.ContextTokens, rawTokens), map[string]string{contract.SecretClientID: spClient, contract.SecretClientSecret: secret}, "")
		if err != nil {
			if strings.Contains(err.Error(), secret) || len(rawTokens) > 16 && strings.Contains(err.Error(), rawTokens) {
				t.Fatalf("the error quotes a credential: %v", err)
			}
			return
		}
		switch r.Mode {
		case ModePodIdentity, ModeWorkloadIdentity, ModeServicePrincipal:
		default:
			t.Fatalf("accepted mode %q", r.Mode)
		}
		if strings.ContainsAny(r.ClientID+r.TenantID, "/?#@ ") {
			t.Fatalf("accepted IDs %q %q", r.ClientID, r.TenantID)
		}
	})
}
