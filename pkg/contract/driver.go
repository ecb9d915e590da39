package contract

import "fmt"

// DefaultDriverName is the CSI driver name of the node plugin, and the driver the
// webhook writes into the volume, unless configured otherwise. It differs from the
// Secrets Store CSI driver's, so both can run side by side.
const DefaultDriverName = "secrets-store.kvinject.io"

// SecretsStoreDriverName is the Secrets Store CSI driver's name: volumes of it are what
// kvinject's migration tools (kubectl kvinject check and migrate) move over, and what
// the webhook replaces when a pod asks for kvinject's volume at the same path.
const SecretsStoreDriverName = "secrets-store.csi.k8s.io"

// ValidateDriverName checks a CSI driver name as both the CSI specification and
// Kubernetes hold it: the name of the CSIDriver object, so a DNS subdomain of at most
// 63 characters: lower-case letters, digits, '-' and '.', starting and ending with a
// letter or digit.
func ValidateDriverName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%q is not a CSI driver name: it must be 1-63 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-' && c != '.' {
			return fmt.Errorf("%q is not a CSI driver name: use lower-case letters, digits, '-' and '.'", s)
		}
	}
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return fmt.Errorf("%q is not a CSI driver name: it must start and end with a letter or digit", s)
	}
	return nil
}
