package keyvault

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/kvinject/kvinject/pkg/contract"
)

// Error classes, for errors.Is on an *ObjectError.
var (
	ErrNotFound    = errors.New("object not found")
	ErrForbidden   = errors.New("access denied")
	ErrDisabled    = errors.New("object disabled")
	ErrThrottled   = errors.New("throttled")
	ErrAuth        = errors.New("authentication failed")
	ErrWrongTenant = errors.New("wrong tenant")
	ErrUnavailable = errors.New("key vault unavailable")
)

// ObjectError is the failure to fetch or render one object. Its message is meant for the
// pod's events: it names the vault, the object and Key Vault's error code, and says
// what to fix. It never contains a token or an object's content.
type ObjectError struct {
	// Vault and Object name the object; Type is its type.
	Vault  string
	Object string
	Type   contract.ObjectType
	// Version is the requested version, "" for the latest.
	Version string
	// Identity describes who asked, e.g. `workload identity (client ID "...")`.
	Identity string
	// Status is the HTTP status Key Vault answered, 0 when there was no answer.
	Status int
	// Code is Key Vault's most specific error code (innererror.code when present).
	Code string
	// Class is one of the Err* classes above, nil when unclassified.
	Class error
	// Err is the underlying error. Its text is only used when Key Vault did not answer.
	Err error
	// detail replaces Err's text in the message when set.
	detail string
}

// Error implements error.
func (e *ObjectError) Error() string {
	obj := fmt.Sprintf("%s %q", e.Type, e.Object)
	if e.Version != "" {
		obj += fmt.Sprintf(" version %s", e.Version)
	}
	head := fmt.Sprintf("vault %q: %s", e.Vault, obj)
	if e.Status != 0 {
		head += fmt.Sprintf(": Key Vault answered %d %s", e.Status, e.Code)
	} else if e.detail != "" {
		head += ": " + e.detail
	} else if e.Err != nil {
		head += ": " + firstLine(e.Err.Error())
	}
	if hint := e.hint(); hint != "" {
		head += ": " + hint
	}
	return head
}

func (e *ObjectError) hint() string {
	who := e.Identity
	if who == "" {
		who = "the pod's identity"
	}
	plural := map[contract.ObjectType]string{contract.TypeSecret: "secrets", contract.TypeKey: "keys", contract.TypeCert: "certificates"}[e.Type]
	switch e.Class {
	case ErrNotFound:
		if e.Version != "" {
			return fmt.Sprintf("there is no %s named %q with version %s in vault %q; check objectName, objectVersion and objectType", e.Type, e.Object, e.Version, e.Vault)
		}
		return fmt.Sprintf("there is no %s named %q in vault %q; check objectName and objectType", e.Type, e.Object, e.Vault)
	case ErrForbidden:
		return fmt.Sprintf("%s lacks get permission on %s in vault %q; grant it get on %s (access policy) or a Key Vault %s User role", who, plural, e.Vault, plural, roleNoun(e.Type))
	case ErrDisabled:
		return fmt.Sprintf("the %s is disabled in vault %q; enable it, or set objectVersion to an enabled version", e.Type, e.Vault)
	case ErrThrottled:
		return fmt.Sprintf("Key Vault throttles the node's requests to vault %q; the node waits as Key Vault asks and the next refresh retries", e.Vault)
	case ErrWrongTenant:
		return fmt.Sprintf("vault %q is not in the tenant the volume names; set tenantId to the vault's tenant", e.Vault)
	case ErrAuth:
		if e.Status == 0 {
			return fmt.Sprintf("check %s: its client ID, tenantId, and its client secret or federated credential", who)
		}
		return fmt.Sprintf("Key Vault rejected the token of %s; check that tenantId is the vault's tenant and that the identity exists there", who)
	case ErrUnavailable:
		return fmt.Sprintf("vault %q did not answer successfully; the node backs off and the next refresh retries", e.Vault)
	}
	return ""
}

func roleNoun(t contract.ObjectType) string {
	switch t {
	case contract.TypeKey:
		return "Crypto"
	case contract.TypeCert:
		return "Certificate"
	}
	return "Secrets"
}

// Unwrap returns the class and the underlying error, for errors.Is and errors.As.
func (e *ObjectError) Unwrap() []error {
	var out []error
	if e.Class != nil {
		out = append(out, e.Class)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// classify builds the ObjectError for err, returned while fetching o from vault.
func classify(vault string, o contract.Object, identity string, err error) *ObjectError {
	oe := &ObjectError{Vault: vault, Object: o.Name, Type: o.ObjectType(), Version: o.Version, Identity: identity, Err: err}
	var be *BackoffError
	if errors.As(err, &be) {
		oe.Class, oe.detail = ErrUnavailable, be.Error()
		if be.Throttled {
			oe.Class = ErrThrottled
		}
		return oe
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		oe.Status = re.StatusCode
		oe.Code = keyVaultCode(re)
		oe.Err = nil
		switch {
		case re.StatusCode == 404:
			oe.Class = ErrNotFound
		case re.StatusCode == 403 && strings.HasSuffix(oe.Code, "Disabled"):
			oe.Class = ErrDisabled
		case re.StatusCode == 403:
			oe.Class = ErrForbidden
		case re.StatusCode == 429:
			oe.Class = ErrThrottled
		case re.StatusCode == 401:
			oe.Class = ErrAuth
		case re.StatusCode >= 500 || re.StatusCode == 408:
			oe.Class = ErrUnavailable
		}
		return oe
	}
	if errors.Is(err, ErrRender) {
		return oe
	}
	// No answer at all (DNS, a refused or reset connection, a cut response) is the
	// same outage as a 5xx, and the node backs off from it the same way.
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		oe.Class, oe.Err = ErrUnavailable, nil
		oe.detail = fmt.Sprintf("%s does not resolve (no such host): check keyvaultName and cloudName", dnsErr.Name)
		return oe
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) {
		oe.Class = ErrUnavailable
		return oe
	}
	msg := err.Error()
	if strings.Contains(msg, "isn't configured to acquire tokens for tenant") {
		oe.Class = ErrWrongTenant
		oe.detail = "the vault's challenge names another tenant"
		return oe
	}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) {
		oe.Class = ErrAuth
		oe.detail = "Entra ID refused to issue a token" + entraCode(afe)
	}
	return oe
}

// keyVaultCode returns the most specific error code of a Key Vault error body.
func keyVaultCode(re *azcore.ResponseError) string {
	code := re.ErrorCode
	if re.RawResponse != nil {
		if body, err := runtime.Payload(re.RawResponse); err == nil {
			var e struct {
				Error struct {
					Code       string `json:"code"`
					InnerError *struct {
						Code string `json:"code"`
					} `json:"innererror"`
				} `json:"error"`
			}
			if json.Unmarshal(body, &e) == nil {
				if e.Error.InnerError != nil && e.Error.InnerError.Code != "" {
					return e.Error.InnerError.Code
				}
				if e.Error.Code != "" {
					return e.Error.Code
				}
			}
		}
	}
	return code
}

// entraCode returns " (error AADSTSnnn)" from an Entra ID error answer, or "".
func entraCode(afe *azidentity.AuthenticationFailedError) string {
	if afe.RawResponse == nil {
		return ""
	}
	body, err := runtime.Payload(afe.RawResponse)
	if err != nil {
		return ""
	}
	var e struct {
		Error      string `json:"error"`
		ErrorCodes []int  `json:"error_codes"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return fmt.Sprintf(" (HTTP %d)", afe.RawResponse.StatusCode)
	}
	if len(e.ErrorCodes) > 0 {
		return fmt.Sprintf(" (%s AADSTS%d)", e.Error, e.ErrorCodes[0])
	}
	return fmt.Sprintf(" (%s)", e.Error)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
