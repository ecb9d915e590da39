package emulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// ObjectType is the kind of a Key Vault object.
type ObjectType string

// Object types, named as in the Key Vault URL path.
const (
	ObjectSecret      ObjectType = "secrets"
	ObjectKey         ObjectType = "keys"
	ObjectCertificate ObjectType = "certificates"
)

// KeyType is a Key Vault key type.
type KeyType string

// Key types.
const (
	KeyRSA KeyType = "RSA"
	KeyEC  KeyType = "EC"
)

// Content types of a certificate's backing secret.
const (
	ContentTypePKCS12 = "application/x-pkcs12"
	ContentTypePEM    = "application/x-pem-file"
)

// SecretOptions are the optional attributes of a new secret version.
type SecretOptions struct {
	ContentType string
	Tags        map[string]string
	// Disabled creates the version disabled.
	Disabled bool
	// Version is the version ID to use ("" = random 32 lowercase hex digits).
	Version string
	// NotBefore and Expires, when non-zero, are reported as nbf and exp.
	NotBefore, Expires time.Time
}

// KeyOptions describe a generated key.
type KeyOptions struct {
	// Type is KeyRSA (default) or KeyEC.
	Type KeyType
	// Size is the RSA modulus size in bits (default 2048).
	Size int
	// Curve is the EC curve name: P-256 (default), P-384 or P-521.
	Curve string
	// Ops are the key operations reported (default all that fit the type).
	Ops      []string
	Tags     map[string]string
	Disabled bool
	Version  string
}

// CertificateOptions describe a generated certificate.
type CertificateOptions struct {
	// Subject is the subject common name (default: the certificate's name).
	Subject  string
	DNSNames []string
	// Key is the key type, size and curve (default RSA 2048).
	Key KeyOptions
	// ContentType of the backing secret: ContentTypePKCS12 (default) or ContentTypePEM.
	ContentType string
	// Validity is the certificate lifetime (default 365 days).
	Validity time.Duration
	// Chain issues the certificate from a generated CA and includes the CA certificate
	// in the backing secret after the leaf.
	Chain    bool
	Tags     map[string]string
	Disabled bool
	Version  string
}

func (o KeyOptions) validate() error {
	switch o.Type {
	case "", KeyRSA:
		if o.Size != 0 && (o.Size < 1024 || o.Size > 4096 || o.Size%8 != 0) {
			return fmt.Errorf("invalid RSA size %d", o.Size)
		}
	case KeyEC:
		if _, err := curveByName(o.Curve); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown key type %q (RSA or EC)", o.Type)
	}
	return nil
}

func curveByName(name string) (elliptic.Curve, error) {
	switch name {
	case "", "P-256":
		return elliptic.P256(), nil
	case "P-384":
		return elliptic.P384(), nil
	case "P-521":
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("unknown curve %q (P-256, P-384 or P-521)", name)
}

func generateKey(o KeyOptions) (crypto.Signer, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Type == KeyEC {
		c, _ := curveByName(o.Curve)
		return ecdsa.GenerateKey(c, rand.Reader)
	}
	size := o.Size
	if size == 0 {
		size = 2048
	}
	return rsa.GenerateKey(rand.Reader, size)
}

// jsonWebKey is a public JWK as Key Vault returns it.
type jsonWebKey struct {
	Kid    string   `json:"kid,omitempty"`
	Kty    string   `json:"kty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      string   `json:"n,omitempty"`
	E      string   `json:"e,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
}

var b64url = base64.RawURLEncoding

func publicJWK(pub crypto.PublicKey, ops []string) (jsonWebKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if ops == nil {
			ops = []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
		}
		return jsonWebKey{Kty: "RSA", KeyOps: ops, N: b64url.EncodeToString(k.N.Bytes()),
			E: b64url.EncodeToString(big.NewInt(int64(k.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		if ops == nil {
			ops = []string{"sign", "verify"}
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		ecdh, err := k.Bytes() // uncompressed point: 0x04 || X || Y
		if err != nil {
			return jsonWebKey{}, err
		}
		return jsonWebKey{Kty: "EC", KeyOps: ops, Crv: k.Curve.Params().Name,
			X: b64url.EncodeToString(ecdh[1 : 1+size]), Y: b64url.EncodeToString(ecdh[1+size:])}, nil
	}
	return jsonWebKey{}, fmt.Errorf("unsupported public key %T", pub)
}

// certMaterial is a generated certificate with its key and chain (leaf first).
type certMaterial struct {
	key   crypto.Signer
	chain []*x509.Certificate
}

func generateCertificate(name string, o CertificateOptions, now time.Time) (*certMaterial, error) {
	key, err := generateKey(o.Key)
	if err != nil {
		return nil, err
	}
	validity := o.Validity
	if validity <= 0 {
		validity = 365 * 24 * time.Hour
	}
	cn := o.Subject
	if cn == "" {
		cn = name
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     o.DNSNames,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	parent, signer := tmpl, key
	var ca *x509.Certificate
	if o.Chain {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		caTmpl := &x509.Certificate{
			SerialNumber:          randomSerial(),
			Subject:               pkix.Name{CommonName: cn + " issuing CA"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(validity + 24*time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
		if err != nil {
			return nil, err
		}
		if ca, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	m := &certMaterial{key: key, chain: []*x509.Certificate{leaf}}
	if ca != nil {
		m.chain = append(m.chain, ca)
	}
	return m, nil
}

// secretValue encodes the backing secret of a certificate: standard base64 PKCS#12
// with an empty password and legacy encryption (as Key Vault exports), or PEM with the
// private key (PKCS#8) followed by the chain, leaf first.
func (m *certMaterial) secretValue(contentType string) (string, error) {
	if contentType == ContentTypePEM {
		der, err := x509.MarshalPKCS8PrivateKey(m.key)
		if err != nil {
			return "", err
		}
		out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		for _, c := range m.chain {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		return string(out), nil
	}
	pfx, err := pkcs12.Legacy.Encode(m.key, m.chain[0], m.chain[1:], "")
	if err != nil {
		return "", fmt.Errorf("encode PKCS#12: %w", err)
	}
	return base64.StdEncoding.EncodeToString(pfx), nil
}

// x5t is the unpadded base64url SHA-1 thumbprint of a DER certificate.
func x5t(der []byte) string {
	sum := sha1.Sum(der)
	return b64url.EncodeToString(sum[:])
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// newVersionID is a random 32 lowercase hex digit version ID.
func newVersionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
