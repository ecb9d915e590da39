package emulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenExchangeAudience is the audience of federated client assertions.
const tokenExchangeAudience = "api://AzureADTokenExchange"

// Issuer is an external token issuer for tests, standing in for a Kubernetes
// service-account issuer: it signs assertions that a FederatedCredential trusts.
type Issuer struct {
	// URL is the iss claim.
	URL string
	key *rsa.PrivateKey
	kid string
}

// NewIssuer generates an RSA key for an issuer with the given URL.
func NewIssuer(url string) (*Issuer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &Issuer{URL: url, key: k, kid: keyThumbprint(k.Public())}, nil
}

// Signer is the issuer's private key (for MintToken's SignWith, or to sign by hand).
func (i *Issuer) Signer() crypto.Signer { return i.key }

// PublicKey is the issuer's public key, for FederatedCredential.Keys.
func (i *Issuer) PublicKey() crypto.PublicKey { return i.key.Public() }

// JWKS is the issuer's key set as JSON, for FederatedCredential.JWKS or a jwksFile.
func (i *Issuer) JWKS() []byte {
	j, _ := publicJWK(i.key.Public(), nil)
	data, _ := json.Marshal(jwks{Keys: []jwksKey{{Kty: j.Kty, Use: "sig", Alg: "RS256", Kid: i.kid, N: j.N, E: j.E}}})
	return data
}

// ServiceAccountToken signs a token like the kubelet's projected service-account token:
// sub system:serviceaccount:{namespace}:{name}, the given audience ("" =
// api://AzureADTokenExchange), valid from now until expiry.
func (i *Issuer) ServiceAccountToken(namespace, name, audience string, now, expiry time.Time) (string, error) {
	if audience == "" {
		audience = tokenExchangeAudience
	}
	claims := jwt.RegisteredClaims{
		Issuer:    i.URL,
		Subject:   "system:serviceaccount:" + namespace + ":" + name,
		Audience:  jwt.ClaimStrings{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(expiry),
	}
	return signJWT(claims, i.key, i.kid)
}

// loadIssuerKeys reads the key files a federated credential names: JWKS keys by kid,
// PEM keys as loose keys.
func loadIssuerKeys(fc FederatedCredential, baseDir string) (issuerKeys, error) {
	resolve := func(f string) string {
		if filepath.IsAbs(f) || baseDir == "" {
			return f
		}
		return filepath.Join(baseDir, f)
	}
	out := issuerKeys{byKid: map[string]crypto.PublicKey{}}
	if fc.JWKSFile != "" {
		data, err := os.ReadFile(resolve(fc.JWKSFile))
		if err != nil {
			return out, fmt.Errorf("read JWKS: %w", err)
		}
		keys, err := parseJWKS(data)
		if err != nil {
			return out, fmt.Errorf("%s: %w", fc.JWKSFile, err)
		}
		out.byKid = keys
	}
	for _, f := range fc.PublicKeyFiles {
		data, err := os.ReadFile(resolve(f))
		if err != nil {
			return out, fmt.Errorf("read public key: %w", err)
		}
		keys, err := parsePublicKeysPEM(data)
		if err != nil {
			return out, fmt.Errorf("%s: %w", f, err)
		}
		out.loose = append(out.loose, keys...)
	}
	return out, nil
}

// parseJWKS decodes the RSA and EC keys of a JWKS, by kid (or thumbprint without kid).
func parseJWKS(data []byte) (map[string]crypto.PublicKey, error) {
	var set jwks
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	out := map[string]crypto.PublicKey{}
	for i, k := range set.Keys {
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		kid := k.Kid
		if kid == "" {
			kid = keyThumbprint(pub)
		}
		out[kid] = pub
	}
	if len(out) == 0 {
		return nil, errors.New("JWKS has no keys")
	}
	return out, nil
}

func (k jwksKey) publicKey() (crypto.PublicKey, error) {
	dec := func(s string) (*big.Int, error) {
		b, err := b64url.DecodeString(s)
		if err != nil {
			return nil, err
		}
		return new(big.Int).SetBytes(b), nil
	}
	switch k.Kty {
	case "RSA":
		n, err := dec(k.N)
		if err != nil {
			return nil, fmt.Errorf("n: %w", err)
		}
		e, err := dec(k.E)
		if err != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
			return nil, errors.New("invalid e")
		}
		if n.BitLen() < 1024 {
			return nil, errors.New("RSA modulus too small")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		c, err := curveByName(k.Crv)
		if err != nil || k.Crv == "" {
			return nil, fmt.Errorf("crv %q", k.Crv)
		}
		x, err := b64url.DecodeString(k.X)
		if err != nil {
			return nil, fmt.Errorf("x: %w", err)
		}
		y, err := b64url.DecodeString(k.Y)
		if err != nil {
			return nil, fmt.Errorf("y: %w", err)
		}
		size := (c.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, errors.New("EC coordinates of the wrong length")
		}
		point := append([]byte{4}, append(x, y...)...)
		return ecdsa.ParseUncompressedPublicKey(c, point)
	}
	return nil, fmt.Errorf("unsupported kty %q", k.Kty)
}

// parsePublicKeysPEM decodes PUBLIC KEY, RSA PUBLIC KEY and CERTIFICATE blocks.
func parsePublicKeysPEM(data []byte) ([]crypto.PublicKey, error) {
	var out []crypto.PublicKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch b.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			out = append(out, k)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			out = append(out, k)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, err
			}
			out = append(out, c.PublicKey)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no public key in PEM")
	}
	return out, nil
}
