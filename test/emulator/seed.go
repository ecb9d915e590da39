package emulator

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// Seed is the initial state of an emulator, usually read from YAML (see LoadSeed and
// testdata/tutorial.yaml). Field names in YAML are the JSON tags.
type Seed struct {
	Tenants              []TenantSeed          `json:"tenants,omitempty"`
	Vaults               []VaultSeed           `json:"vaults,omitempty"`
	Principals           []Principal           `json:"principals,omitempty"`
	FederatedCredentials []FederatedCredential `json:"federatedCredentials,omitempty"`
	PodIdentities        []PodIdentity         `json:"podIdentities,omitempty"`
	ManagedIdentities    []ManagedIdentity     `json:"managedIdentities,omitempty"`

	// baseDir resolves relative file names (JWKS and PEM files); LoadSeed sets it to
	// the seed file's directory.
	baseDir string
}

// TenantSeed is an Entra ID tenant.
type TenantSeed struct {
	// ID is the tenant ID (a GUID in Azure; any [0-9A-Za-z.-] string here).
	ID string `json:"id"`
	// Name is an optional second name (a domain) the authority also answers to.
	Name string `json:"name,omitempty"`
}

// VaultSeed is a Key Vault with its objects and access policies.
type VaultSeed struct {
	Name string `json:"name"`
	// Tenant is the tenant ID the vault belongs to (tokens must be issued by it).
	Tenant string `json:"tenant"`
	// Cloud is AzurePublicCloud (default), AzureUSGovernmentCloud or AzureChinaCloud.
	Cloud string `json:"cloud,omitempty"`
	// Location appears in error messages (default "eastus").
	Location       string            `json:"location,omitempty"`
	Secrets        []SecretSeed      `json:"secrets,omitempty"`
	Keys           []KeySeed         `json:"keys,omitempty"`
	Certificates   []CertificateSeed `json:"certificates,omitempty"`
	AccessPolicies []AccessPolicy    `json:"accessPolicies,omitempty"`
}

// SecretSeed is a secret. Value, ContentType, Tags and Enabled describe a single version;
// Versions, when given, lists versions oldest first (the last is the latest) and each
// version inherits the secret-level fields it leaves empty.
type SecretSeed struct {
	Name        string              `json:"name"`
	Value       string              `json:"value,omitempty"`
	ContentType string              `json:"contentType,omitempty"`
	Tags        map[string]string   `json:"tags,omitempty"`
	Enabled     *bool               `json:"enabled,omitempty"`
	Versions    []SecretVersionSeed `json:"versions,omitempty"`
}

// SecretVersionSeed is one version of a secret.
type SecretVersionSeed struct {
	// Version is the 32 lowercase hex digit version ID ("" = random).
	Version     string            `json:"version,omitempty"`
	Value       string            `json:"value"`
	ContentType string            `json:"contentType,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Enabled     *bool             `json:"enabled,omitempty"`
}

// VersionSeed is one generated version of a key or certificate.
type VersionSeed struct {
	Version string `json:"version,omitempty"`
	Enabled *bool  `json:"enabled,omitempty"`
}

// KeySeed is a key; its material is generated at start.
type KeySeed struct {
	Name string `json:"name"`
	// Type is RSA (default) or EC.
	Type string `json:"type,omitempty"`
	// Size is the RSA modulus size in bits (default 2048).
	Size int `json:"size,omitempty"`
	// Curve is the EC curve: P-256 (default), P-384 or P-521.
	Curve    string            `json:"curve,omitempty"`
	Ops      []string          `json:"ops,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
	Enabled  *bool             `json:"enabled,omitempty"`
	Versions []VersionSeed     `json:"versions,omitempty"`
}

// CertificateSeed is a certificate; key and certificate are generated at start.
type CertificateSeed struct {
	Name string `json:"name"`
	// Subject is the subject common name (default: the certificate's name).
	Subject  string   `json:"subject,omitempty"`
	DNSNames []string `json:"dnsNames,omitempty"`
	// KeyType is RSA (default) or EC; KeySize and Curve as in KeySeed.
	KeyType string `json:"keyType,omitempty"`
	KeySize int    `json:"keySize,omitempty"`
	Curve   string `json:"curve,omitempty"`
	// ContentType of the backing secret: application/x-pkcs12 (default) or
	// application/x-pem-file.
	ContentType string `json:"contentType,omitempty"`
	// ValidityDays is the certificate lifetime (default 365).
	ValidityDays int `json:"validityDays,omitempty"`
	// Chain issues the certificate from a generated CA and includes the CA in the
	// backing secret (leaf first), instead of a self-signed certificate.
	Chain    bool              `json:"chain,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
	Enabled  *bool             `json:"enabled,omitempty"`
	Versions []VersionSeed     `json:"versions,omitempty"`
}

// AccessPolicy grants one principal permissions on a vault. Permissions are "get",
// "list" (and "set" for secrets) or "all".
type AccessPolicy struct {
	// Principal names the principal by name, client ID or object ID.
	Principal    string   `json:"principal"`
	Secrets      []string `json:"secrets,omitempty"`
	Keys         []string `json:"keys,omitempty"`
	Certificates []string `json:"certificates,omitempty"`
}

// Principal is a service principal (application) or managed identity.
type Principal struct {
	// Name is an optional handle used by access policies.
	Name     string `json:"name,omitempty"`
	ClientID string `json:"clientID"`
	// ObjectID is the principal's object ID ("" = derived from the client ID).
	ObjectID string `json:"objectID,omitempty"`
	Tenant   string `json:"tenant"`
	// ClientSecret, when set, lets the principal use the client_credentials grant with
	// client_secret. Never logged.
	ClientSecret string `json:"clientSecret,omitempty"`
}

// FederatedCredential trusts tokens of an external issuer (such as a Kubernetes
// service-account issuer) as client assertions for an application.
type FederatedCredential struct {
	Name     string `json:"name,omitempty"`
	ClientID string `json:"clientID"`
	Issuer   string `json:"issuer"`
	// Subject is e.g. system:serviceaccount:<namespace>:<service account>.
	Subject string `json:"subject"`
	// Audience defaults to api://AzureADTokenExchange.
	Audience string `json:"audience,omitempty"`
	// The issuer's public keys: a JWKS file, PEM public key (or certificate) files,
	// inline JWKS, inline PEM, or (from Go) Keys. Relative file names are resolved
	// against the seed file's directory.
	JWKSFile       string             `json:"jwksFile,omitempty"`
	PublicKeyFiles []string           `json:"publicKeyFiles,omitempty"`
	JWKS           json.RawMessage    `json:"jwks,omitempty"`
	PublicKeysPEM  string             `json:"publicKeysPEM,omitempty"`
	Keys           []crypto.PublicKey `json:"-"`
}

// PodIdentity maps pods to an identity for NMI: a pod in Namespace whose name matches
// the glob Pod ("" or "*" = any pod) gets tokens for ClientID. Selector is the
// AzureIdentityBinding selector it stands for (informational; NMI here has no API server).
type PodIdentity struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod,omitempty"`
	Selector  string `json:"selector,omitempty"`
	ClientID  string `json:"clientID"`
}

// ManagedIdentity is an identity served by IMDS. The first one marked Default (or the
// only one) answers requests without client_id. A principal with the same client ID
// is created when none exists.
type ManagedIdentity struct {
	ClientID string `json:"clientID"`
	ObjectID string `json:"objectID,omitempty"`
	Tenant   string `json:"tenant"`
	Default  bool   `json:"default,omitempty"`
}

// LoadSeed reads and validates a YAML seed file. Relative file names inside it are
// resolved against the file's directory.
func LoadSeed(file string) (*Seed, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	s, err := ParseSeed(data)
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", file, err)
	}
	s.baseDir = filepath.Dir(file)
	return s, nil
}

// ParseSeed decodes and validates a YAML (or JSON) seed. Unknown fields are errors.
// It reads no files.
func ParseSeed(data []byte) (*Seed, error) {
	var s Seed
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, fmt.Errorf("decode seed: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

var (
	objectNameRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)
	vaultNameRE  = regexp.MustCompile(`^[A-Za-z][0-9A-Za-z-]{1,22}[0-9A-Za-z]$`)
	versionRE    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	idRE         = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.-]{0,99}$`)
)

// Validate checks the seed's structure: names, references between sections and
// permission names. It reads no files.
func (s *Seed) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	tenants := map[string]bool{}
	for i, t := range s.Tenants {
		if !idRE.MatchString(t.ID) {
			add("tenants[%d]: invalid id %q", i, t.ID)
		}
		if t.Name != "" && !idRE.MatchString(t.Name) {
			add("tenants[%d]: invalid name %q", i, t.Name)
		}
		if tenants[t.ID] {
			add("tenants[%d]: duplicate id %q", i, t.ID)
		}
		tenants[t.ID] = true
		if t.Name != "" {
			tenants[t.Name] = true
		}
	}
	tenantOK := func(where, id string) {
		if !tenants[id] {
			add("%s: unknown tenant %q", where, id)
		}
	}
	principals := map[string]bool{}
	for i, p := range s.Principals {
		where := fmt.Sprintf("principals[%d]", i)
		if !idRE.MatchString(p.ClientID) {
			add("%s: invalid clientID %q", where, p.ClientID)
		}
		if p.ObjectID != "" && !idRE.MatchString(p.ObjectID) {
			add("%s: invalid objectID %q", where, p.ObjectID)
		}
		tenantOK(where, p.Tenant)
		for _, n := range []string{p.Name, p.ClientID, p.ObjectID} {
			if n != "" {
				principals[n] = true
			}
		}
	}
	for i, m := range s.ManagedIdentities {
		where := fmt.Sprintf("managedIdentities[%d]", i)
		if !idRE.MatchString(m.ClientID) {
			add("%s: invalid clientID %q", where, m.ClientID)
		}
		tenantOK(where, m.Tenant)
		principals[m.ClientID] = true
		if m.ObjectID != "" {
			principals[m.ObjectID] = true
		}
	}
	vaults := map[string]bool{}
	for i, v := range s.Vaults {
		where := fmt.Sprintf("vaults[%d]", i)
		if !vaultNameRE.MatchString(v.Name) {
			add("%s: invalid vault name %q (3-24 of [0-9A-Za-z-], starting with a letter)", where, v.Name)
		}
		if vaults[strings.ToLower(v.Name)] {
			add("%s: duplicate vault %q", where, v.Name)
		}
		vaults[strings.ToLower(v.Name)] = true
		tenantOK(where, v.Tenant)
		if _, ok := cloudByName(v.Cloud); !ok {
			add("%s: unknown cloud %q", where, v.Cloud)
		}
		for j, o := range v.Secrets {
			w := fmt.Sprintf("%s.secrets[%d]", where, j)
			checkName(add, w, o.Name)
			for k, ver := range o.Versions {
				checkVersion(add, fmt.Sprintf("%s.versions[%d]", w, k), ver.Version)
			}
		}
		for j, o := range v.Keys {
			w := fmt.Sprintf("%s.keys[%d]", where, j)
			checkName(add, w, o.Name)
			if err := (KeyOptions{Type: KeyType(o.Type), Size: o.Size, Curve: o.Curve}).validate(); err != nil {
				add("%s: %v", w, err)
			}
			for k, ver := range o.Versions {
				checkVersion(add, fmt.Sprintf("%s.versions[%d]", w, k), ver.Version)
			}
		}
		for j, o := range v.Certificates {
			w := fmt.Sprintf("%s.certificates[%d]", where, j)
			checkName(add, w, o.Name)
			if err := (KeyOptions{Type: KeyType(o.KeyType), Size: o.KeySize, Curve: o.Curve}).validate(); err != nil {
				add("%s: %v", w, err)
			}
			switch o.ContentType {
			case "", ContentTypePKCS12, ContentTypePEM:
			default:
				add("%s: contentType %q is neither %s nor %s", w, o.ContentType, ContentTypePKCS12, ContentTypePEM)
			}
			if o.ValidityDays < 0 {
				add("%s: negative validityDays", w)
			}
			for k, ver := range o.Versions {
				checkVersion(add, fmt.Sprintf("%s.versions[%d]", w, k), ver.Version)
			}
		}
		for j, ap := range v.AccessPolicies {
			w := fmt.Sprintf("%s.accessPolicies[%d]", where, j)
			if !principals[ap.Principal] {
				add("%s: unknown principal %q", w, ap.Principal)
			}
			if _, err := ap.permissions(); err != nil {
				add("%s: %v", w, err)
			}
		}
	}
	for i, fc := range s.FederatedCredentials {
		where := fmt.Sprintf("federatedCredentials[%d]", i)
		if !principals[fc.ClientID] {
			add("%s: unknown clientID %q", where, fc.ClientID)
		}
		if fc.Issuer == "" || fc.Subject == "" {
			add("%s: issuer and subject are required", where)
		}
		if fc.JWKSFile == "" && len(fc.PublicKeyFiles) == 0 && len(fc.JWKS) == 0 && fc.PublicKeysPEM == "" {
			add("%s: no issuer keys (jwksFile, publicKeyFiles, jwks or publicKeysPEM)", where)
		}
	}
	for i, p := range s.PodIdentities {
		where := fmt.Sprintf("podIdentities[%d]", i)
		if p.Namespace == "" {
			add("%s: namespace is required", where)
		}
		if _, err := path.Match(p.Pod, ""); err != nil {
			add("%s: invalid pod glob %q: %v", where, p.Pod, err)
		}
		if p.ClientID == "" {
			add("%s: clientID is required", where)
		}
	}
	return errors.Join(errs...)
}

func checkName(add func(string, ...any), where, name string) {
	if !objectNameRE.MatchString(name) {
		add("%s: invalid object name %q (1-127 of [0-9A-Za-z-])", where, name)
	}
}

func checkVersion(add func(string, ...any), where, v string) {
	if v != "" && !versionRE.MatchString(v) {
		add("%s: invalid version %q (32 lowercase hex digits)", where, v)
	}
}
