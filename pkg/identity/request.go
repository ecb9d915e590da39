package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kvinject/kvinject/pkg/contract"
)

// Mode is how a pod's token is obtained.
type Mode string

// Modes.
const (
	ModePodIdentity      Mode = "pod-identity"
	ModeWorkloadIdentity Mode = "workload-identity"
	ModeServicePrincipal Mode = "service-principal"
)

// Sentinel errors of Select.
var (
	// ErrNoIdentity: the volume names no identity mode.
	ErrNoIdentity = errors.New("no identity")
	// ErrNodeIdentity: the volume asks for the node's or VM's identity, which kvinject refuses.
	ErrNodeIdentity = errors.New("node identity refused")
	// ErrMissingToken: workload identity without a service-account token for the audience.
	ErrMissingToken = errors.New("missing service-account token")
	// ErrInvalid: a field is missing or malformed.
	ErrInvalid = errors.New("invalid identity parameters")
)

// Request says whose token to get. It holds credentials (the service-account token,
// the client secret): never log it; log Describe instead.
type Request struct {
	Mode Mode
	// TenantID is the Entra ID tenant (workload identity, service principal).
	TenantID string
	// ClientID is the application's client ID (workload identity, service principal).
	ClientID string
	// PodName, PodNamespace and PodUID identify the pod (pod identity, and messages),
	// as the kubelet gives them.
	PodName, PodNamespace, PodUID string
	// ServiceAccountToken is the kubelet's token for the token audience (workload
	// identity); ServiceAccountSubject is its subject, system:serviceaccount:<ns>:<name>,
	// checked against the pod the kubelet names; ServiceAccountExpiry its expiry.
	ServiceAccountToken   string
	ServiceAccountSubject string
	ServiceAccountExpiry  time.Time
	// ClientSecret is the service principal's secret.
	ClientSecret string
}

// Key identifies the identity for caches: two requests with the same key are the same
// principal, and a credential, token or object fetched for one may serve the other.
// It holds no credential: the service principal's secret is in it only as a SHA-256.
// Pod identity is keyed by the pod (NMI decides the identity per pod), workload
// identity by the tenant, client ID and service account, a service principal by the
// tenant, client ID and its secret. authority is the Entra ID authority host.
func (r Request) Key(authority string) string {
	switch r.Mode {
	case ModePodIdentity:
		return strings.Join([]string{string(r.Mode), r.PodNamespace, r.PodName, r.PodUID}, "|")
	case ModeWorkloadIdentity:
		return strings.Join([]string{string(r.Mode), authority, r.TenantID, r.ClientID, r.ServiceAccountSubject}, "|")
	case ModeServicePrincipal:
		sum := sha256.Sum256([]byte(r.ClientSecret))
		return strings.Join([]string{string(r.Mode), authority, r.TenantID, r.ClientID, hex.EncodeToString(sum[:])}, "|")
	}
	return ""
}

// Describe names the identity for logs and events, without any credential.
func (r Request) Describe() string {
	switch r.Mode {
	case ModePodIdentity:
		return fmt.Sprintf("pod identity of pod %s/%s", r.PodNamespace, r.PodName)
	case ModeWorkloadIdentity:
		return fmt.Sprintf("workload identity (client ID %q)", r.ClientID)
	case ModeServicePrincipal:
		// Nothing of the nodePublishSecretRef Secret is quoted: a Secret with its keys
		// swapped would hold the client secret where the client ID belongs.
		return "the service principal of the volume's nodePublishSecretRef"
	}
	return "no identity"
}

// Sensitive returns the credential strings r carries (to scrub from any text).
func (r Request) Sensitive() []string {
	var out []string
	for _, s := range []string{r.ServiceAccountToken, r.ClientSecret} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Attributes are the identity-related volume attributes (SecretProviderClass
// parameters) Select reads.
type Attributes struct {
	TenantID               string
	ClientID               string
	UsePodIdentity         string
	UseVMManagedIdentity   string
	UserAssignedIdentityID string
}

// Select picks the identity mode for a volume and gathers what it needs, in the Azure
// provider's order: usePodIdentity, then clientID (workload identity), then a
// nodePublishSecretRef with clientid/clientsecret (service principal). A request for
// the node's identity (useVMManagedIdentity, userAssignedIdentityID) is refused with
// ErrNodeIdentity, and so is a volume with no mode (ErrNoIdentity): nothing falls back
// to the node. The service-account token is read from secrets first, then from
// volumeContext, for audience (contract.DefaultTokenAudience when empty). Errors never
// contain a credential.
func Select(a Attributes, volumeContext, secrets map[string]string, audience string) (Request, error) {
	if audience == "" {
		audience = contract.DefaultTokenAudience
	}
	r := Request{
		TenantID:     strings.TrimSpace(a.TenantID),
		ClientID:     strings.TrimSpace(a.ClientID),
		PodName:      volumeContext[contract.ContextPodName],
		PodNamespace: volumeContext[contract.ContextPodNamespace],
		PodUID:       volumeContext[contract.ContextPodUID],
	}
	podIdentity, err := a.PodIdentity()
	if err != nil {
		return Request{}, err
	}
	if err := RefuseNodeIdentity(a); err != nil {
		return Request{}, err
	}
	switch {
	case podIdentity:
		r.Mode = ModePodIdentity
		r.ClientID, r.TenantID = "", "" // NMI decides both from the pod's binding
		if r.PodName == "" || r.PodNamespace == "" {
			return Request{}, fmt.Errorf("%w: pod identity needs the pod's name and namespace; set podInfoOnMount: true in the CSIDriver", ErrInvalid)
		}
	case r.ClientID != "":
		r.Mode = ModeWorkloadIdentity
		if err := contract.ValidateClientID(r.ClientID); err != nil {
			return Request{}, fmt.Errorf("%w: clientID: %w", ErrInvalid, err)
		}
		tok, err := serviceAccountToken(volumeContext, secrets, audience)
		if err != nil {
			return Request{}, err
		}
		claims, err := parseClaims(tok)
		if err != nil {
			return Request{}, err
		}
		// The subject must be the service account the kubelet names for the pod: a token
		// of another account never stands for this pod, and caches are keyed by it.
		sa := volumeContext[contract.ContextServiceAccount]
		want := "system:serviceaccount:" + r.PodNamespace + ":" + sa
		if sa == "" || r.PodNamespace == "" {
			return Request{}, fmt.Errorf("%w: workload identity needs the pod's namespace and service account; set podInfoOnMount: true in the CSIDriver", ErrInvalid)
		}
		if claims.Subject != want {
			return Request{}, fmt.Errorf("%w: the service-account token is not pod %s/%s's: it is not for service account %s", ErrInvalid, r.PodNamespace, r.PodName, sa)
		}
		r.ServiceAccountToken, r.ServiceAccountSubject, r.ServiceAccountExpiry = tok, claims.Subject, claims.Expiry
	case secrets[contract.SecretClientID] != "" || secrets[contract.SecretClientSecret] != "":
		r.Mode = ModeServicePrincipal
		r.ClientID = strings.TrimSpace(secrets[contract.SecretClientID])
		r.ClientSecret = secrets[contract.SecretClientSecret]
		if r.ClientID == "" || r.ClientSecret == "" {
			return Request{}, fmt.Errorf("%w: the nodePublishSecretRef secret must hold both %q and %q", ErrInvalid, contract.SecretClientID, contract.SecretClientSecret)
		}
		if !contract.IsGUID(r.ClientID) {
			// Never quoted: a Secret with its keys swapped holds the client secret here.
			return Request{}, fmt.Errorf("%w: the nodePublishSecretRef secret's %q is not a client ID (a GUID); check that %q and %q are not swapped", ErrInvalid, contract.SecretClientID, contract.SecretClientID, contract.SecretClientSecret)
		}
	default:
		return Request{}, fmt.Errorf("%w: the volume names no identity; set usePodIdentity: \"true\" (AAD Pod Identity), clientID (workload identity), or a nodePublishSecretRef with clientid and clientsecret", ErrNoIdentity)
	}
	if r.Mode != ModePodIdentity {
		if r.TenantID == "" {
			return Request{}, fmt.Errorf("%w: tenantId is required for %s", ErrInvalid, r.Mode)
		}
		if err := contract.ValidateTenantID(r.TenantID); err != nil {
			return Request{}, fmt.Errorf("%w: tenantId: %w", ErrInvalid, err)
		}
	}
	return r, nil
}

func serviceAccountToken(volumeContext, secrets map[string]string, audience string) (string, error) {
	raw, ok := secrets[contract.ContextTokens]
	if !ok || raw == "" {
		raw = volumeContext[contract.ContextTokens]
	}
	if raw == "" {
		return "", fmt.Errorf("%w: the kubelet sent no service-account token; add tokenRequests with audience %q to the CSIDriver", ErrMissingToken, audience)
	}
	tokens, err := ParseServiceAccountTokens(raw)
	if err != nil {
		return "", err
	}
	t, ok := tokens[audience]
	if !ok || t.Token == "" {
		return "", fmt.Errorf("%w: the kubelet sent no service-account token for audience %q; add it to the CSIDriver's tokenRequests (the chart's csi.tokenAudience sets both)", ErrMissingToken, audience)
	}
	return t.Token, nil
}

// RefuseNodeIdentity returns ErrNodeIdentity when the attributes ask for the node's
// managed identity (useVMManagedIdentity, userAssignedIdentityID), which every pod on
// the node could use, and ErrInvalid when useVMManagedIdentity is not a boolean. Select
// applies it to every volume; kubectl kvinject check to every SecretProviderClass.
func RefuseNodeIdentity(a Attributes) error {
	vmIdentity, err := parseBool("useVMManagedIdentity", a.UseVMManagedIdentity)
	if err != nil {
		return err
	}
	if vmIdentity || strings.TrimSpace(a.UserAssignedIdentityID) != "" {
		return fmt.Errorf("%w: the volume asks for the node's managed identity (useVMManagedIdentity/userAssignedIdentityID), which every pod on the node could use; use pod identity (usePodIdentity), workload identity (clientID) or a service principal (nodePublishSecretRef)", ErrNodeIdentity)
	}
	return nil
}

// PodIdentity reports whether the attributes ask for AAD Pod Identity (usePodIdentity),
// which the Azure provider's order puts before a client ID.
func (a Attributes) PodIdentity() (bool, error) {
	return parseBool("usePodIdentity", a.UsePodIdentity)
}

func parseBool(field, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, fmt.Errorf("%w: %s must be \"true\" or \"false\", not %q", ErrInvalid, field, truncate(v, 16))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
