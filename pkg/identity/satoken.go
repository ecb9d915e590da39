package identity

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
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

// claims are the parts of a service-account token the plugin reads: its subject and
// expiry. They are read without verifying the signature (Entra ID verifies it); they
// only key caches and check that the kubelet's token is the pod's.
type claims struct {
	Subject string
	Expiry  time.Time
}

// parseClaims reads a JWT's payload. Its errors never quote the token.
func parseClaims(token string) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, fmt.Errorf("%w: the service-account token is not a JWT (%d parts)", ErrInvalid, len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return claims{}, fmt.Errorf("%w: the service-account token's payload is not base64url", ErrInvalid)
	}
	var p struct {
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.Sub == "" {
		return claims{}, fmt.Errorf("%w: the service-account token has no subject", ErrInvalid)
	}
	return claims{Subject: p.Sub, Expiry: time.Unix(p.Exp, 0)}, nil
}
