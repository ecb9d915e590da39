package emulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenOptions describe an access token for MintToken. Zero fields take the values
// Entra ID would use, so a bad token needs only the one field that makes it bad.
type TokenOptions struct {
	// Tenant is the tid claim and, by default, part of the issuer.
	Tenant string
	// ClientID is the appid claim.
	ClientID string
	// ObjectID is the oid claim ("" = the principal's object ID, or one derived from
	// the client ID).
	ObjectID string
	// Audience is the aud claim ("" = https://vault.azure.net).
	Audience string
	// Issuer is the iss claim ("" = https://sts.windows.net/{Tenant}/).
	Issuer string
	// IssuedAt is the iat and nbf claims (zero = now by the emulator's clock).
	IssuedAt time.Time
	// Expiry is the exp claim (zero = IssuedAt + the token lifetime). A time in the past
	// makes an expired token.
	Expiry time.Time
	// SignWith signs the token instead of the Entra ID key (RSA or ECDSA P-256), which
	// makes a token with a foreign signature.
	SignWith crypto.Signer
	// KeyID is the kid header ("" = the Entra key's ID, or a thumbprint of SignWith).
	KeyID string
}

// signingKey is the Entra ID token signing key.
type signingKey struct {
	key *rsa.PrivateKey
	kid string
}

func newSigningKey() (*signingKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &signingKey{key: k, kid: keyThumbprint(k.Public())}, nil
}

// keyThumbprint is a stable key ID: unpadded base64url SHA-1 of the public key DER
// (the shape of Entra's kid/x5t).
func keyThumbprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unknown"
	}
	sum := sha1.Sum(der)
	return b64url.EncodeToString(sum[:])
}

// jwks is a JSON Web Key Set.
type jwks struct {
	Keys []jwksKey `json:"keys"`
}

type jwksKey struct {
	Kty string   `json:"kty"`
	Use string   `json:"use,omitempty"`
	Kid string   `json:"kid,omitempty"`
	X5t string   `json:"x5t,omitempty"`
	Alg string   `json:"alg,omitempty"`
	N   string   `json:"n,omitempty"`
	E   string   `json:"e,omitempty"`
	Crv string   `json:"crv,omitempty"`
	X   string   `json:"x,omitempty"`
	Y   string   `json:"y,omitempty"`
	X5c []string `json:"x5c,omitempty"`
}

func (s *signingKey) jwks() jwks {
	j, _ := publicJWK(s.key.Public(), nil)
	return jwks{Keys: []jwksKey{{Kty: j.Kty, Use: "sig", Kid: s.kid, X5t: s.kid, N: j.N, E: j.E}}}
}

// accessClaims are the claims of a v1 access token as Entra ID issues them.
type accessClaims struct {
	jwt.RegisteredClaims
	AppID    string `json:"appid,omitempty"`
	AppIDACR string `json:"appidacr,omitempty"`
	IdP      string `json:"idp,omitempty"`
	OID      string `json:"oid,omitempty"`
	TID      string `json:"tid,omitempty"`
	Ver      string `json:"ver,omitempty"`
	UTI      string `json:"uti,omitempty"`
}

func stsIssuer(tenant string) string { return "https://sts.windows.net/" + tenant + "/" }

func (e *Emulator) mint(o TokenOptions) (string, error) {
	now := o.IssuedAt
	if now.IsZero() {
		now = e.clock()
	}
	exp := o.Expiry
	if exp.IsZero() {
		exp = now.Add(e.lifetime)
	}
	if o.Audience == "" {
		o.Audience = PublicCloud.Resource()
	}
	if o.Issuer == "" {
		o.Issuer = stsIssuer(o.Tenant)
	}
	if o.ObjectID == "" {
		o.ObjectID = e.state.objectIDFor(o.ClientID)
	}
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Audience:  jwt.ClaimStrings{o.Audience},
			Issuer:    o.Issuer,
			Subject:   o.ObjectID,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		AppID: o.ClientID, AppIDACR: "1", IdP: o.Issuer, OID: o.ObjectID, TID: o.Tenant,
		Ver: "1.0", UTI: newVersionID()[:22],
	}
	var signer crypto.Signer = e.signer.key
	kid := e.signer.kid
	if o.SignWith != nil {
		signer = o.SignWith
		kid = keyThumbprint(o.SignWith.Public())
	}
	if o.KeyID != "" {
		kid = o.KeyID
	}
	return signJWT(claims, signer, kid)
}

// signJWT signs claims with an RSA (RS256) or ECDSA (ES256/384/512) key.
func signJWT(claims jwt.Claims, key crypto.Signer, kid string) (string, error) {
	var m jwt.SigningMethod
	switch k := key.(type) {
	case *rsa.PrivateKey:
		m = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().BitSize {
		case 256:
			m = jwt.SigningMethodES256
		case 384:
			m = jwt.SigningMethodES384
		default:
			m = jwt.SigningMethodES512
		}
	default:
		return "", fmt.Errorf("unsupported signing key %T", key)
	}
	t := jwt.NewWithClaims(m, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	return t.SignedString(key)
}

// Token validation outcomes, mapped to Key Vault's 401 messages by keyvault.go.
var (
	errTokenMalformed   = errors.New("malformed token")
	errTokenUnknownKey  = errors.New("unknown signing key")
	errTokenSignature   = errors.New("invalid signature")
	errTokenExpired     = errors.New("token expired")
	errTokenNotYetValid = errors.New("token not yet valid")
)

// issuerKeys are the public keys of a token issuer: byKid by key ID, and loose keys
// without a known ID (PEM files), which are tried for any kid.
type issuerKeys struct {
	byKid map[string]crypto.PublicKey
	loose []crypto.PublicKey
}

func (k issuerKeys) count() int { return len(k.byKid) + len(k.loose) }

// verifyJWT checks the signature of raw against keys (the key with the token's kid, or
// any loose key) and its time claims against now. It does not check audience or issuer.
func verifyJWT(raw string, keys issuerKeys, now time.Time, claims jwt.Claims) error {
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"}),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(0),
	)
	// Read the kid without verifying.
	unverified, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return errTokenMalformed
	}
	var candidates []crypto.PublicKey
	kid, _ := unverified.Header["kid"].(string)
	if k, ok := keys.byKid[kid]; ok && kid != "" {
		candidates = append(candidates, k)
	} else if kid == "" {
		for _, k := range keys.byKid {
			candidates = append(candidates, k)
		}
	}
	candidates = append(candidates, keys.loose...)
	if len(candidates) == 0 {
		return errTokenUnknownKey
	}
	for _, k := range candidates {
		_, err := parser.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return k, nil })
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jwt.ErrTokenExpired):
			return errTokenExpired
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return errTokenNotYetValid
		case errors.Is(err, jwt.ErrTokenMalformed):
			return errTokenMalformed
		}
	}
	return errTokenSignature
}

// derivedID makes a stable GUID-shaped ID from a string (object IDs of principals that
// have none configured).
func derivedID(kind, s string) string {
	sum := sha256.Sum256([]byte(kind + ":" + s))
	h := hex.EncodeToString(sum[:16])
	return strings.Join([]string{h[0:8], h[8:12], h[12:16], h[16:20], h[20:32]}, "-")
}
