package keyvault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/kvinject/kvinject/pkg/contract"
)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCert(t *testing.T, cn string, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: parent == nil || cn != "leaf", BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCert{cert: c, key: key}
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestRenderSecret(t *testing.T) {
	t.Parallel()
	root := newCert(t, "root", nil)
	inter := newCert(t, "intermediate", root)
	leaf := newCert(t, "leaf", inter)
	// The PFX lists the CA certificates root first: rendering must order them.
	pfx, err := pkcs12.Legacy.Encode(leaf.key, leaf.cert, []*x509.Certificate{root.cert, inter.cert}, "")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leaf.key)
	wantChain := pemOf("PRIVATE KEY", keyDER) + pemOf("CERTIFICATE", leaf.cert.Raw) + pemOf("CERTIFICATE", inter.cert.Raw) + pemOf("CERTIFICATE", root.cert.Raw)
	kid := "https://v.vault.azure.net/keys/c/0123"
	storedPEM := "-----BEGIN PRIVATE KEY-----\nstored\n-----END PRIVATE KEY-----\n"

	cases := []struct {
		name string
		obj  contract.Object
		in   Secret
		want string
		err  bool
	}{
		{"utf-8 default", contract.Object{Name: "s"}, Secret{Value: "MyP@ssword123456"}, "MyP@ssword123456", false},
		{"utf-8 explicit", contract.Object{Name: "s", Encoding: contract.EncodingUTF8}, Secret{Value: "x\ny"}, "x\ny", false},
		{"base64", contract.Object{Name: "s", Encoding: contract.EncodingBase64}, Secret{Value: base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255})}, "\x00\x01\x02\xff", false},
		{"bad base64", contract.Object{Name: "s", Encoding: contract.EncodingBase64}, Secret{Value: "not base64!"}, "", true},
		{"hex", contract.Object{Name: "s", Encoding: contract.EncodingHex}, Secret{Value: "00ff41"}, "\x00\xffA", false},
		{"bad hex", contract.Object{Name: "s", Encoding: contract.EncodingHex}, Secret{Value: "zz"}, "", true},
		{"cert-backed PKCS#12: key and chain leaf to root", contract.Object{Name: "c"}, Secret{Value: base64.StdEncoding.EncodeToString(pfx), ContentType: ContentTypePKCS12, KeyID: kid}, wantChain, false},
		{"cert-backed PKCS#12 as pfx", contract.Object{Name: "c", Format: contract.FormatPFX}, Secret{Value: base64.StdEncoding.EncodeToString(pfx), ContentType: ContentTypePKCS12, KeyID: kid}, string(pfx), false},
		{"cert-backed PEM as stored", contract.Object{Name: "c"}, Secret{Value: storedPEM, ContentType: ContentTypePEM, KeyID: kid}, storedPEM, false},
		{"cert-backed PEM as pfx", contract.Object{Name: "c", Format: contract.FormatPFX}, Secret{Value: storedPEM, ContentType: ContentTypePEM, KeyID: kid}, "", true},
		{"cert-backed unknown content type", contract.Object{Name: "c"}, Secret{Value: "secret-value-123", ContentType: "text/plain", KeyID: kid}, "", true},
		{"cert-backed PFX not base64", contract.Object{Name: "c"}, Secret{Value: "%%%", ContentType: ContentTypePKCS12, KeyID: kid}, "", true},
		{"cert-backed PFX garbage", contract.Object{Name: "c"}, Secret{Value: base64.StdEncoding.EncodeToString([]byte("garbage")), ContentType: ContentTypePKCS12, KeyID: kid}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderSecret(tc.obj, tc.in)
			if tc.err {
				if !errors.Is(err, ErrRender) {
					t.Fatalf("err = %v, want ErrRender", err)
				}
				if bytes.Contains([]byte(err.Error()), []byte(tc.in.Value)) {
					t.Fatal("the error quotes the value")
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("RenderSecret = %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
}

func TestRenderKeyAndCertificate(t *testing.T) {
	t.Parallel()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ek.PublicKey)
	// Key Vault sends unpadded big-endian coordinates: a short X must be left-padded.
	xb, yb := ek.X.Bytes(), ek.Y.Bytes()
	cases := []struct {
		name string
		key  Key
		want string
		err  bool
	}{
		{"RSA", Key{Kty: "RSA", N: rk.N.Bytes(), E: big.NewInt(int64(rk.E)).Bytes()}, pemOf("PUBLIC KEY", rsaDER), false},
		{"RSA-HSM", Key{Kty: "RSA-HSM", N: rk.N.Bytes(), E: big.NewInt(int64(rk.E)).Bytes()}, pemOf("PUBLIC KEY", rsaDER), false},
		{"EC P-384", Key{Kty: "EC", Crv: "P-384", X: xb, Y: yb}, pemOf("PUBLIC KEY", ecDER), false},
		{"EC wrong curve", Key{Kty: "EC", Crv: "P-256", X: xb, Y: yb}, "", true},
		{"EC unknown curve", Key{Kty: "EC", Crv: "P-256K", X: xb, Y: yb}, "", true},
		{"oct", Key{Kty: "oct"}, "", true},
		{"RSA without modulus", Key{Kty: "RSA", E: []byte{1, 0, 1}}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderKey(contract.Object{Name: "k", Type: contract.TypeKey}, tc.key)
			if tc.err != (err != nil) || string(got) != tc.want {
				t.Fatalf("RenderKey = %q, %v; want %q (error %v)", got, err, tc.want, tc.err)
			}
		})
	}
	c := newCert(t, "root", nil)
	got, err := RenderCertificate(contract.Object{Name: "c", Type: contract.TypeCert}, Certificate{CER: c.cert.Raw})
	if err != nil || string(got) != pemOf("CERTIFICATE", c.cert.Raw) {
		t.Fatalf("RenderCertificate = %q, %v", got, err)
	}
	if _, err := RenderCertificate(contract.Object{Name: "c"}, Certificate{CER: []byte("nope")}); !errors.Is(err, ErrRender) {
		t.Fatalf("RenderCertificate(garbage) = %v", err)
	}
}

func TestOrderChain(t *testing.T) {
	t.Parallel()
	root := newCert(t, "root", nil)
	inter := newCert(t, "intermediate", root)
	leaf := newCert(t, "leaf", inter)
	other := newCert(t, "unrelated", nil)
	names := func(cs []*x509.Certificate) string {
		var out string
		for _, c := range cs {
			out += c.Subject.CommonName + ","
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		leaf   *x509.Certificate
		others []*x509.Certificate
		want   string
	}{
		{"root first", leaf.cert, []*x509.Certificate{root.cert, inter.cert}, "leaf,intermediate,root,"},
		{"ordered", leaf.cert, []*x509.Certificate{inter.cert, root.cert}, "leaf,intermediate,root,"},
		{"unrelated last", leaf.cert, []*x509.Certificate{other.cert, root.cert, inter.cert}, "leaf,intermediate,root,unrelated,"},
		{"no leaf given", nil, []*x509.Certificate{root.cert, leaf.cert, inter.cert}, "leaf,intermediate,root,"},
		{"leaf alone", leaf.cert, nil, "leaf,"},
	} {
		if got := names(OrderChain(tc.leaf, tc.others)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
