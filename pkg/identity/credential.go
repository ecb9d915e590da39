package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// DefaultNMIEndpoint is where AAD Pod Identity's NMI listens on every node.
const DefaultNMIEndpoint = "http://127.0.0.1:2579"

// Options configures NewCredential.
type Options struct {
	// Cloud gives the Entra ID authority host. Instance discovery is always disabled.
	Cloud cloud.Configuration
	// Transport sends requests to Entra ID; nil uses azcore's default.
	Transport policy.Transporter
	// NMIEndpoint is NMI's base URL; empty means DefaultNMIEndpoint.
	NMIEndpoint string
	// NMIClient sends requests to NMI; nil means a client with a 30 s timeout.
	NMIClient *http.Client
	// Assertion returns the client assertion of a workload identity (nil = r's
	// ServiceAccountToken). A cached credential passes the freshest token the kubelet
	// has handed over for that identity.
	Assertion func(context.Context) (string, error)
}

// NewCredential returns a token credential for r's identity and nothing else. It
// sends no request until a token is asked for. Every credential it returns is safe for
// concurrent use and caches its token until shortly before it expires.
func NewCredential(r Request, opts Options) (azcore.TokenCredential, error) {
	co := azcore.ClientOptions{Cloud: opts.Cloud, Transport: opts.Transport}
	switch r.Mode {
	case ModePodIdentity:
		return NewNMICredential(NMIOptions{Endpoint: opts.NMIEndpoint, Client: opts.NMIClient, PodName: r.PodName, PodNamespace: r.PodNamespace}), nil
	case ModeWorkloadIdentity:
		assertion := opts.Assertion
		if assertion == nil {
			token := r.ServiceAccountToken
			if token == "" {
				return nil, fmt.Errorf("%w: workload identity without a service-account token", ErrMissingToken)
			}
			assertion = func(context.Context) (string, error) { return token, nil }
		}
		return azidentity.NewClientAssertionCredential(r.TenantID, r.ClientID, assertion,
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
	case ModeServicePrincipal:
		return azidentity.NewClientSecretCredential(r.TenantID, r.ClientID, r.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
	}
	return nil, errors.New("identity: no mode selected")
}
