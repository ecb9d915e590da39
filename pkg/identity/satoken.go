package identity

import (
	"encoding/json"
	"fmt"
)

// ServiceAccountToken is one entry of the kubelet's csi.storage.k8s.io/serviceAccount.tokens.
type ServiceAccountToken struct {
	Token               string `json:"token"`
	ExpirationTimestamp string `json:"expirationTimestamp"`
}

// ParseServiceAccountTokens parses the kubelet's token map
// {"<audience>":{"token":"<jwt>","expirationTimestamp":"<RFC3339>"}}. The error never
// quotes the input, which holds tokens.
func ParseServiceAccountTokens(raw string) (map[string]ServiceAccountToken, error) {
	var m map[string]ServiceAccountToken
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, fmt.Errorf("%w: the kubelet's serviceAccount.tokens is not a JSON map of audience to token (%d bytes)", ErrInvalid, len(raw))
	}
	return m, nil
}
