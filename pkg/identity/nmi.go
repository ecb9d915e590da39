package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// ErrNMI is wrapped by every error of the NMI credential.
var ErrNMI = errors.New("AAD Pod Identity (NMI)")

// NMIOptions configures NewNMICredential.
type NMIOptions struct {
	// Endpoint is NMI's base URL; empty means DefaultNMIEndpoint.
	Endpoint string
	// Client sends the requests; nil means a client with a 30 s timeout.
	Client *http.Client
	// PodName and PodNamespace are the pod whose identity is asked for.
	PodName, PodNamespace string
}

// NMICredential gets tokens for one pod from AAD Pod Identity's NMI:
// GET {endpoint}/host/token/?resource=... with headers podname and podns. It keeps
// each resource's token until RefreshBefore its expiry. It is safe for concurrent use.
type NMICredential struct {
	opts     NMIOptions
	clientID atomic.Value // string: the identity NMI last answered for

	mu     sync.Mutex
	tokens map[string]azcore.AccessToken // by resource
}

// RefreshBefore is how long before its expiry a cached token is replaced, as azidentity
// does for its credentials.
const RefreshBefore = 5 * time.Minute

// ClientID is the client ID of the identity NMI last issued a token for, "" before.
func (c *NMICredential) ClientID() string {
	s, _ := c.clientID.Load().(string)
	return s
}

// NewNMICredential returns the NMI credential for the pod named in opts.
func NewNMICredential(opts NMIOptions) *NMICredential {
	if opts.Endpoint == "" {
		opts.Endpoint = DefaultNMIEndpoint
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &NMICredential{opts: opts}
}

type nmiResponse struct {
	Token struct {
		AccessToken string `json:"access_token"`
		ExpiresOn   string `json:"expires_on"`
		ExpiresIn   string `json:"expires_in"`
	} `json:"token"`
	ClientID string `json:"clientid"`
}

// GetToken implements azcore.TokenCredential. The scope's "/.default" suffix is
// dropped to form NMI's resource parameter.
func (c *NMICredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(o.Scopes) != 1 {
		return azcore.AccessToken{}, fmt.Errorf("%w: want exactly one scope, got %d", ErrNMI, len(o.Scopes))
	}
	resource := strings.TrimSuffix(o.Scopes[0], "/.default")
	c.mu.Lock()
	if tok, ok := c.tokens[resource]; ok && time.Until(tok.ExpiresOn) > RefreshBefore {
		c.mu.Unlock()
		return tok, nil
	}
	c.mu.Unlock()
	u := strings.TrimSuffix(c.opts.Endpoint, "/") + "/host/token/?resource=" + url.QueryEscape(resource)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("%w: %w", ErrNMI, err)
	}
	req.Header.Set("podname", c.opts.PodName)
	req.Header.Set("podns", c.opts.PodNamespace)
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("%w: NMI at %s did not answer; is AAD Pod Identity installed on the node? (%w)", ErrNMI, c.opts.Endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("%w: reading NMI's answer: %w", ErrNMI, err)
	}
	pod := c.opts.PodNamespace + "/" + c.opts.PodName
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return azcore.AccessToken{}, fmt.Errorf("%w: NMI answered 404: no identity is assigned to pod %s; check that an AzureIdentityBinding's selector matches the pod's aadpodidbinding label", ErrNMI, pod)
	case http.StatusForbidden:
		return azcore.AccessToken{}, fmt.Errorf("%w: NMI answered 403: it could not get a token for pod %s's identity; check the AzureIdentity's client ID and that the identity exists", ErrNMI, pod)
	default:
		return azcore.AccessToken{}, fmt.Errorf("%w: NMI answered %d for pod %s", ErrNMI, resp.StatusCode, pod)
	}
	var r nmiResponse
	if err := json.Unmarshal(body, &r); err != nil || r.Token.AccessToken == "" || r.ClientID == "" {
		return azcore.AccessToken{}, fmt.Errorf("%w: NMI's answer for pod %s has no access_token or clientid", ErrNMI, pod)
	}
	c.clientID.Store(r.ClientID)
	tok := azcore.AccessToken{Token: r.Token.AccessToken, ExpiresOn: time.Now().Add(5 * time.Minute)}
	if sec, err := strconv.ParseInt(r.Token.ExpiresOn, 10, 64); err == nil {
		tok.ExpiresOn = time.Unix(sec, 0)
	} else if sec, err := strconv.ParseInt(r.Token.ExpiresIn, 10, 64); err == nil {
		tok.ExpiresOn = time.Now().Add(time.Duration(sec) * time.Second)
	}
	c.mu.Lock()
	if c.tokens == nil {
		c.tokens = map[string]azcore.AccessToken{}
	}
	c.tokens[resource] = tok
	c.mu.Unlock()
	return tok, nil
}
