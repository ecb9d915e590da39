package keyvault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/kvinject/kvinject/pkg/contract"
)

// Content types of secrets that back certificates.
const (
	ContentTypePKCS12 = "application/x-pkcs12"
	ContentTypePEM    = "application/x-pem-file"
)

// ErrRender is wrapped by every rendering error. Rendering errors never quote the
// object's content.
var ErrRender = errors.New("cannot render object")

// RenderSecret returns the file content of a secret object, as the Azure provider does:
// a plain secret is its value decoded per o.Encoding; a secret backing a certificate is
// the private key (PKCS#8 PEM) followed by the certificates leaf to root, or the raw
// PFX when o.Format is pfx, or the stored PEM when its content type is PEM.
func RenderSecret(o contract.Object, s Secret) ([]byte, error) {
	if s.KeyID != "" || s.ContentType == ContentTypePKCS12 && o.Format == contract.FormatPFX {
		return renderCertSecret(o, s)
	}
	switch o.Encoding {
	case "", contract.EncodingUTF8:
		return []byte(s.Value), nil
	case contract.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(s.Value)
		if err != nil {
			return nil, fmt.Errorf("%w: objectEncoding is base64 but the value is not standard base64", ErrRender)
		}
		return b, nil
	case contract.EncodingHex:
		b, err := hex.DecodeString(s.Value)
		if err != nil {
			return nil, fmt.Errorf("%w: objectEncoding is hex but the value is not hexadecimal", ErrRender)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("%w: unknown objectEncoding %q", ErrRender, o.Encoding)
	}
}

func renderCertSecret(o contract.Object, s Secret) ([]byte, error) {
	switch s.ContentType {
	case ContentTypePEM:
		if o.Format == contract.FormatPFX {
			return nil, fmt.Errorf("%w: objectFormat is pfx but the certificate is stored as PEM", ErrRender)
		}
		return []byte(s.Value), nil
	case ContentTypePKCS12:
	default:
		return nil, fmt.Errorf("%w: the secret backs a certificate but has content type %q", ErrRender, s.ContentType)
	}
	pfx, err := base64.StdEncoding.DecodeString(s.Value)
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate's PFX is not standard base64", ErrRender)
	}
	if o.Format == contract.FormatPFX {
		return pfx, nil
	}
	key, leaf, cas, err := pkcs12.DecodeChain(pfx, "")
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate's PFX cannot be decoded with an empty password", ErrRender)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate's private key cannot be encoded as PKCS#8", ErrRender)
	}
	var buf bytes.Buffer
	_ = pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, c := range OrderChain(leaf, cas) {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes(), nil
}

// OrderChain returns leaf followed by the certificates of others ordered from the one
// that issued leaf up to the root; certificates that are not part of that path follow
// in their original order. A nil leaf orders others alone, starting from the one no
// other certificate was issued by.
func OrderChain(leaf *x509.Certificate, others []*x509.Certificate) []*x509.Certificate {
	rest := append([]*x509.Certificate(nil), others...)
	var out []*x509.Certificate
	cur := leaf
	if cur == nil {
		cur = chainLeaf(rest)
		if cur == nil {
			return rest
		}
		rest = remove(rest, cur)
	}
	out = append(out, cur)
	for len(rest) > 0 && !isSelfIssued(cur) {
		next := issuerOf(cur, rest)
		if next == nil {
			break
		}
		out = append(out, next)
		rest = remove(rest, next)
		cur = next
	}
	return append(out, rest...)
}

// chainLeaf returns the certificate of certs that issued none of the others.
func chainLeaf(certs []*x509.Certificate) *x509.Certificate {
	for _, c := range certs {
		issuer := false
		for _, d := range certs {
			if d != c && bytes.Equal(d.RawIssuer, c.RawSubject) && !isSelfIssued(d) {
				issuer = true
				break
			}
		}
		if !issuer {
			return c
		}
	}
	return nil
}

func issuerOf(c *x509.Certificate, certs []*x509.Certificate) *x509.Certificate {
	for _, d := range certs {
		if bytes.Equal(c.RawIssuer, d.RawSubject) && (len(c.AuthorityKeyId) == 0 || len(d.SubjectKeyId) == 0 || bytes.Equal(c.AuthorityKeyId, d.SubjectKeyId)) {
			return d
		}
	}
	return nil
}

func isSelfIssued(c *x509.Certificate) bool { return bytes.Equal(c.RawIssuer, c.RawSubject) }

func remove(certs []*x509.Certificate, c *x509.Certificate) []*x509.Certificate {
	out := certs[:0]
	for _, d := range certs {
		if d != c {
			out = append(out, d)
		}
	}
	return out
}

// RenderKey returns the public key of k as a PEM "PUBLIC KEY" block (PKIX), for RSA
// and EC keys (HSM-backed ones too).
func RenderKey(o contract.Object, k Key) ([]byte, error) {
	var pub any
	switch strings.TrimSuffix(k.Kty, "-HSM") {
	case "RSA":
		if len(k.N) == 0 || len(k.E) == 0 {
			return nil, fmt.Errorf("%w: the RSA key has no modulus or exponent", ErrRender)
		}
		e := new(big.Int).SetBytes(k.E)
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("%w: the RSA key's exponent is out of range", ErrRender)
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(k.N), E: int(e.Int64())}
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("%w: the EC curve %q is not supported (P-256, P-384, P-521)", ErrRender, k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(k.X) > size || len(k.Y) > size {
			return nil, fmt.Errorf("%w: the EC point does not fit curve %s", ErrRender, k.Crv)
		}
		// Uncompressed point: 0x04 || X || Y, each left-padded to the field size.
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1+size-len(k.X):1+size], k.X)
		copy(point[1+2*size-len(k.Y):], k.Y)
		ecdh, err := ecdsaKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("%w: the EC point is not on curve %s", ErrRender, k.Crv)
		}
		pub = ecdh
	default:
		return nil, fmt.Errorf("%w: key type %q cannot be rendered (RSA or EC)", ErrRender, k.Kty)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRender, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func ecdsaKey(curve elliptic.Curve, point []byte) (*ecdsa.PublicKey, error) {
	return ecdsa.ParseUncompressedPublicKey(curve, point)
}

// RenderCertificate returns the leaf certificate as a PEM "CERTIFICATE" block.
func RenderCertificate(o contract.Object, c Certificate) ([]byte, error) {
	if _, err := x509.ParseCertificate(c.CER); err != nil {
		return nil, fmt.Errorf("%w: the certificate is not valid DER", ErrRender)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.CER}), nil
}
