package contract

import (
	"fmt"
	"strings"
)

// ValidateVaultName checks a Key Vault name: 3-24 characters, letters, digits and '-',
// starting with a letter, ending with a letter or digit, no "--". A vault name becomes
// a host name, so nothing else may pass. The error says which rule the name breaks.
func ValidateVaultName(name string) error {
	if len(name) < 3 || len(name) > 24 {
		return fmt.Errorf("%q is not a Key Vault name: it must be 3-24 characters long", truncate(name, 64))
	}
	for i := 0; i < len(name); i++ {
		if !isAlnum(name[i]) && name[i] != '-' {
			return fmt.Errorf("%q is not a Key Vault name: it may hold only letters, digits and '-'", name)
		}
	}
	if !isLetter(name[0]) || name[len(name)-1] == '-' || strings.Contains(name, "--") {
		return fmt.Errorf("%q is not a Key Vault name: it must start with a letter, end with a letter or digit, and hold no \"--\"", name)
	}
	return nil
}

// ValidateTenantID accepts an Entra ID tenant: its GUID or its domain name
// (contoso.onmicrosoft.com).
func ValidateTenantID(s string) error {
	if IsGUID(s) {
		return nil
	}
	bad := fmt.Errorf("%q is not a tenant: use the tenant's GUID or its domain name", truncate(s, 64))
	if len(s) > 253 || !strings.Contains(s, ".") {
		return bad
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for i := 0; i < len(label); i++ {
			if !isAlnum(label[i]) && label[i] != '-' {
				return bad
			}
		}
	}
	return nil
}

// ValidateClientID accepts a GUID, the form of every Entra ID application client ID.
func ValidateClientID(s string) error {
	if !IsGUID(s) {
		return fmt.Errorf("%q is not a client ID: use the identity's application (client) ID, a GUID like 00000000-0000-0000-0000-000000000000", truncate(s, 64))
	}
	return nil
}

// ValidateSelector checks an AAD Pod Identity selector, which becomes the value of the
// LabelPodIdentity label.
func ValidateSelector(s string) error {
	if s == "" {
		return fmt.Errorf("the selector is empty: write the AzureIdentityBinding's selector, or remove the annotation to use the namespace's or the cluster's identity")
	}
	if len(s) > 63 {
		return fmt.Errorf("%q is not a selector: it becomes the %s label, whose value is at most 63 characters", truncate(s, 64), LabelPodIdentity)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("%q is not a selector: it becomes the %s label, whose value holds only letters, digits, '-', '_' and '.'", s, LabelPodIdentity)
		}
	}
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return fmt.Errorf("%q is not a selector: it becomes the %s label, whose value starts and ends with a letter or digit", s, LabelPodIdentity)
	}
	return nil
}

// IsGUID reports whether s is a GUID in its 8-4-4-4-12 hexadecimal form.
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool  { return isLetter(c) || c >= '0' && c <= '9' }
func isHex(c byte) bool    { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// truncate bounds how much of a user's value a message repeats.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
