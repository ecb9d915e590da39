package emulator

import (
	"crypto"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

// state is everything the emulator knows: tenants, vaults and their objects,
// principals and their credentials. One lock guards it all; handlers copy what they
// need under the read lock.
type state struct {
	mu    sync.RWMutex
	clock func() time.Time

	tenants    map[string]string // id or name -> id
	vaults     map[string]*vault // lower-case name
	principals map[string]*Principal
	federated  []federatedEntry
	pods       []PodIdentity
	managed    []ManagedIdentity
}

type vault struct {
	name     string
	tenant   string
	cloud    Cloud
	location string
	objects  map[ObjectType]map[string]*object // lower-case object name
	policies map[string]permissions            // principal object ID -> permissions
}

// object is a Key Vault object with its versions in creation order (the last is the
// latest).
type object struct {
	name     string
	versions []*version
}

// version is one version of a secret, key or certificate.
type version struct {
	id          string
	created     time.Time
	updated     time.Time
	enabled     bool
	nbf, exp    time.Time
	contentType string
	tags        map[string]string
	value       string        // secrets
	managed     bool          // secret or key backing a certificate
	jwk         *jsonWebKey   // keys
	cert        *certMaterial // certificates
	pub         crypto.PublicKey
}

type federatedEntry struct {
	FederatedCredential
	keys issuerKeys
}

// permissions is a set of "type/permission" strings such as "secrets/get".
type permissions map[string]bool

func newState(clock func() time.Time) *state {
	return &state{
		clock:      clock,
		tenants:    map[string]string{},
		vaults:     map[string]*vault{},
		principals: map[string]*Principal{},
	}
}

// apply loads a seed. It is called once, before serving.
func (s *state) apply(seed *Seed) error {
	if err := seed.Validate(); err != nil {
		return err
	}
	for _, t := range seed.Tenants {
		if err := s.addTenant(t); err != nil {
			return err
		}
	}
	for _, p := range seed.Principals {
		if err := s.addPrincipal(p); err != nil {
			return err
		}
	}
	for _, m := range seed.ManagedIdentities {
		if err := s.addManagedIdentity(m); err != nil {
			return err
		}
	}
	for _, v := range seed.Vaults {
		if err := s.addVault(VaultSeed{Name: v.Name, Tenant: v.Tenant, Cloud: v.Cloud, Location: v.Location}); err != nil {
			return err
		}
		if err := s.seedObjects(v); err != nil {
			return fmt.Errorf("vault %s: %w", v.Name, err)
		}
		for _, ap := range v.AccessPolicies {
			if err := s.setAccessPolicy(v.Name, ap); err != nil {
				return err
			}
		}
	}
	for _, fc := range seed.FederatedCredentials {
		keys, err := loadIssuerKeys(fc, seed.baseDir)
		if err != nil {
			return fmt.Errorf("federated credential %s: %w", fc.Name, err)
		}
		if err := s.addFederated(fc, keys); err != nil {
			return err
		}
	}
	for _, p := range seed.PodIdentities {
		if err := s.addPodIdentity(p); err != nil {
			return err
		}
	}
	return nil
}

func enabledOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func (s *state) seedObjects(v VaultSeed) error {
	for _, sec := range v.Secrets {
		vers := sec.Versions
		if len(vers) == 0 {
			vers = []SecretVersionSeed{{Value: sec.Value}}
		}
		for _, ver := range vers {
			ct := ver.ContentType
			if ct == "" {
				ct = sec.ContentType
			}
			tags := ver.Tags
			if tags == nil {
				tags = sec.Tags
			}
			opts := SecretOptions{ContentType: ct, Tags: tags, Version: ver.Version,
				Disabled: !enabledOr(ver.Enabled, enabledOr(sec.Enabled, true))}
			if _, err := s.setSecret(v.Name, sec.Name, ver.Value, opts); err != nil {
				return err
			}
		}
	}
	for _, k := range v.Keys {
		vers := k.Versions
		if len(vers) == 0 {
			vers = []VersionSeed{{}}
		}
		for _, ver := range vers {
			opts := KeyOptions{Type: KeyType(k.Type), Size: k.Size, Curve: k.Curve, Ops: k.Ops, Tags: k.Tags,
				Version: ver.Version, Disabled: !enabledOr(ver.Enabled, enabledOr(k.Enabled, true))}
			if _, err := s.addKey(v.Name, k.Name, opts); err != nil {
				return err
			}
		}
	}
	for _, c := range v.Certificates {
		vers := c.Versions
		if len(vers) == 0 {
			vers = []VersionSeed{{}}
		}
		for _, ver := range vers {
			opts := CertificateOptions{
				Subject: c.Subject, DNSNames: c.DNSNames,
				Key:         KeyOptions{Type: KeyType(c.KeyType), Size: c.KeySize, Curve: c.Curve},
				ContentType: c.ContentType, Chain: c.Chain, Tags: c.Tags, Version: ver.Version,
				Validity: time.Duration(c.ValidityDays) * 24 * time.Hour,
				Disabled: !enabledOr(ver.Enabled, enabledOr(c.Enabled, true)),
			}
			if _, err := s.addCertificate(v.Name, c.Name, opts); err != nil {
				return err
			}
		}
	}
	return nil
}

// --- tenants, vaults ----------------------------------------------------------------

func (s *state) addTenant(t TenantSeed) error {
	if !idRE.MatchString(t.ID) {
		return fmt.Errorf("invalid tenant id %q", t.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenants[t.ID] = t.ID
	if t.Name != "" {
		s.tenants[t.Name] = t.ID
	}
	return nil
}

// tenantID resolves a tenant ID or name; ok is false for unknown tenants.
func (s *state) tenantID(idOrName string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.tenants[idOrName]
	return id, ok
}

func (s *state) addVault(v VaultSeed) error {
	if !vaultNameRE.MatchString(v.Name) {
		return fmt.Errorf("invalid vault name %q", v.Name)
	}
	c, ok := cloudByName(v.Cloud)
	if !ok {
		return fmt.Errorf("vault %s: unknown cloud %q", v.Name, v.Cloud)
	}
	loc := v.Location
	if loc == "" {
		loc = "eastus"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tenants[v.Tenant]; !ok {
		return fmt.Errorf("vault %s: unknown tenant %q", v.Name, v.Tenant)
	}
	key := strings.ToLower(v.Name)
	if _, ok := s.vaults[key]; ok {
		return fmt.Errorf("vault %s exists", v.Name)
	}
	s.vaults[key] = &vault{
		name: v.Name, tenant: s.tenants[v.Tenant], cloud: c, location: loc,
		objects: map[ObjectType]map[string]*object{
			ObjectSecret: {}, ObjectKey: {}, ObjectCertificate: {},
		},
		policies: map[string]permissions{},
	}
	return nil
}

// vaultCloud is the cloud of a vault, the public cloud for unknown vaults.
func (s *state) vaultCloud(name string) Cloud {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if v, ok := s.vaults[strings.ToLower(name)]; ok {
		return v.cloud
	}
	return PublicCloud
}

func (e *Emulator) vaultURLs() map[string]string {
	e.state.mu.RLock()
	names := make([]string, 0, len(e.state.vaults))
	for _, v := range e.state.vaults {
		names = append(names, v.name)
	}
	e.state.mu.RUnlock()
	out := map[string]string{}
	for _, n := range names {
		out[n] = e.VaultURL(n)
	}
	return out
}

// vaultLocked returns a vault; the caller holds s.mu.
func (s *state) vaultLocked(name string) (*vault, error) {
	v, ok := s.vaults[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("vault %q: %w", name, errNotFound)
	}
	return v, nil
}

// --- objects ------------------------------------------------------------------------

// addVersion appends a version to an object, creating the object; the caller holds s.mu.
func (v *vault) addVersion(typ ObjectType, name string, ver *version) error {
	if !objectNameRE.MatchString(name) {
		return fmt.Errorf("invalid object name %q", name)
	}
	if ver.id == "" {
		ver.id = newVersionID()
	} else if !versionRE.MatchString(ver.id) {
		return fmt.Errorf("invalid version %q", ver.id)
	}
	objs := v.objects[typ]
	o, ok := objs[strings.ToLower(name)]
	if !ok {
		o = &object{name: name}
		objs[strings.ToLower(name)] = o
	}
	for _, existing := range o.versions {
		if existing.id == ver.id {
			return fmt.Errorf("%s %s version %s exists", typ, name, ver.id)
		}
	}
	o.versions = append(o.versions, ver)
	return nil
}

func (s *state) newVersion(id string, enabled bool, contentType string, tags map[string]string) *version {
	now := s.clock().UTC().Truncate(time.Second)
	return &version{id: id, created: now, updated: now, enabled: enabled, contentType: contentType, tags: cloneTags(tags)}
}

func cloneTags(t map[string]string) map[string]string {
	if t == nil {
		return nil
	}
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

func (s *state) setSecret(vaultName, name, value string, o SecretOptions) (string, error) {
	ver := s.newVersion(o.Version, !o.Disabled, o.ContentType, o.Tags)
	ver.value = value
	ver.nbf, ver.exp = o.NotBefore, o.Expires
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vaultLocked(vaultName)
	if err != nil {
		return "", err
	}
	if err := v.addVersion(ObjectSecret, name, ver); err != nil {
		return "", err
	}
	return ver.id, nil
}

func (s *state) addKey(vaultName, name string, o KeyOptions) (string, error) {
	key, err := generateKey(o)
	if err != nil {
		return "", err
	}
	jwk, err := publicJWK(key.Public(), o.Ops)
	if err != nil {
		return "", err
	}
	ver := s.newVersion(o.Version, !o.Disabled, "", o.Tags)
	ver.jwk, ver.pub = &jwk, key.Public()
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vaultLocked(vaultName)
	if err != nil {
		return "", err
	}
	if err := v.addVersion(ObjectKey, name, ver); err != nil {
		return "", err
	}
	return ver.id, nil
}

func (s *state) addCertificate(vaultName, name string, o CertificateOptions) (string, error) {
	ct := o.ContentType
	if ct == "" {
		ct = ContentTypePKCS12
	}
	if ct != ContentTypePKCS12 && ct != ContentTypePEM {
		return "", fmt.Errorf("certificate content type %q is neither %s nor %s", ct, ContentTypePKCS12, ContentTypePEM)
	}
	m, err := generateCertificate(name, o, s.clock())
	if err != nil {
		return "", err
	}
	value, err := m.secretValue(ct)
	if err != nil {
		return "", err
	}
	id := o.Version
	if id == "" {
		id = newVersionID()
	}
	leaf := m.chain[0]
	cert := s.newVersion(id, !o.Disabled, ct, o.Tags)
	cert.cert = m
	cert.nbf, cert.exp = leaf.NotBefore.UTC().Truncate(time.Second), leaf.NotAfter.UTC().Truncate(time.Second)
	sec := s.newVersion(id, !o.Disabled, ct, o.Tags)
	sec.value, sec.managed, sec.nbf, sec.exp = value, true, cert.nbf, cert.exp
	jwk, err := publicJWK(m.key.Public(), nil)
	if err != nil {
		return "", err
	}
	key := s.newVersion(id, !o.Disabled, "", o.Tags)
	key.jwk, key.pub, key.managed, key.nbf, key.exp = &jwk, m.key.Public(), true, cert.nbf, cert.exp

	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vaultLocked(vaultName)
	if err != nil {
		return "", err
	}
	if err := v.addVersion(ObjectCertificate, name, cert); err != nil {
		return "", err
	}
	if err := v.addVersion(ObjectSecret, name, sec); err != nil {
		return "", err
	}
	if err := v.addVersion(ObjectKey, name, key); err != nil {
		return "", err
	}
	return id, nil
}

func (s *state) setEnabled(vaultName string, typ ObjectType, name, versionID string, enabled bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vaultLocked(vaultName)
	if err != nil {
		return err
	}
	types := []ObjectType{typ}
	if typ == ObjectCertificate {
		types = append(types, ObjectSecret, ObjectKey)
	}
	now := s.clock().UTC().Truncate(time.Second)
	for i, t := range types {
		objs, ok := v.objects[t]
		if !ok {
			return fmt.Errorf("unknown object type %q", t)
		}
		o, ok := objs[strings.ToLower(name)]
		if !ok {
			if i == 0 {
				return fmt.Errorf("%s %q: %w", t, name, errNotFound)
			}
			continue
		}
		ver := o.find(versionID)
		if ver == nil {
			if i == 0 {
				return fmt.Errorf("%s %q version %q: %w", t, name, versionID, errNotFound)
			}
			continue
		}
		ver.enabled, ver.updated = enabled, now
	}
	return nil
}

// find returns a version by ID ("" = latest), nil when there is none.
func (o *object) find(id string) *version {
	if len(o.versions) == 0 {
		return nil
	}
	if id == "" {
		return o.versions[len(o.versions)-1]
	}
	for _, v := range o.versions {
		if v.id == strings.ToLower(id) {
			return v
		}
	}
	return nil
}

// --- principals and access ----------------------------------------------------------

func (s *state) addPrincipal(p Principal) error {
	if !idRE.MatchString(p.ClientID) {
		return fmt.Errorf("invalid client ID %q", p.ClientID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tid, ok := s.tenants[p.Tenant]
	if !ok {
		return fmt.Errorf("principal %s: unknown tenant %q", p.ClientID, p.Tenant)
	}
	p.Tenant = tid
	if p.ObjectID == "" {
		p.ObjectID = derivedID("oid", p.ClientID)
	}
	s.principals[p.ClientID] = &p
	return nil
}

// principal returns a copy of the principal with the client ID.
func (s *state) principal(clientID string) (Principal, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.principals[clientID]
	if !ok {
		return Principal{}, false
	}
	return *p, true
}

func (s *state) objectIDFor(clientID string) string {
	if p, ok := s.principal(clientID); ok {
		return p.ObjectID
	}
	return derivedID("oid", clientID)
}

// resolvePrincipalLocked finds a principal by name, client ID or object ID.
func (s *state) resolvePrincipalLocked(ref string) (*Principal, bool) {
	if p, ok := s.principals[ref]; ok {
		return p, true
	}
	for _, p := range s.principals {
		if p.Name == ref || p.ObjectID == ref {
			return p, true
		}
	}
	return nil, false
}

func (ap AccessPolicy) permissions() (permissions, error) {
	out := permissions{}
	allowed := map[ObjectType][]string{
		ObjectSecret:      {"get", "list", "set"},
		ObjectKey:         {"get", "list"},
		ObjectCertificate: {"get", "list"},
	}
	for typ, perms := range map[ObjectType][]string{ObjectSecret: ap.Secrets, ObjectKey: ap.Keys, ObjectCertificate: ap.Certificates} {
		for _, p := range perms {
			p = strings.ToLower(p)
			if p == "all" {
				for _, a := range allowed[typ] {
					out[string(typ)+"/"+a] = true
				}
				continue
			}
			if !slices.Contains(allowed[typ], p) {
				return nil, fmt.Errorf("unknown %s permission %q (one of %s, all)", typ, p, strings.Join(allowed[typ], ", "))
			}
			out[string(typ)+"/"+p] = true
		}
	}
	return out, nil
}

func (s *state) setAccessPolicy(vaultName string, ap AccessPolicy) error {
	perms, err := ap.permissions()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.vaultLocked(vaultName)
	if err != nil {
		return err
	}
	p, ok := s.resolvePrincipalLocked(ap.Principal)
	if !ok {
		return fmt.Errorf("access policy: unknown principal %q", ap.Principal)
	}
	if len(perms) == 0 {
		delete(v.policies, p.ObjectID)
		return nil
	}
	v.policies[p.ObjectID] = perms
	return nil
}

func (s *state) addFederatedCredential(fc FederatedCredential) error {
	return s.addFederated(fc, issuerKeys{byKid: map[string]crypto.PublicKey{}})
}

// addFederated adds a federated credential with keys already read from files, plus
// the inline keys of fc (JWKS, PEM, Keys).
func (s *state) addFederated(fc FederatedCredential, keys issuerKeys) error {
	if fc.Audience == "" {
		fc.Audience = tokenExchangeAudience
	}
	if fc.Issuer == "" || fc.Subject == "" {
		return fmt.Errorf("federated credential %s: issuer and subject are required", fc.Name)
	}
	if keys.byKid == nil {
		keys.byKid = map[string]crypto.PublicKey{}
	}
	keys.loose = append(keys.loose, fc.Keys...)
	if len(fc.JWKS) > 0 {
		ks, err := parseJWKS(fc.JWKS)
		if err != nil {
			return fmt.Errorf("federated credential %s: %w", fc.Name, err)
		}
		for kid, k := range ks {
			keys.byKid[kid] = k
		}
	}
	if fc.PublicKeysPEM != "" {
		ks, err := parsePublicKeysPEM([]byte(fc.PublicKeysPEM))
		if err != nil {
			return fmt.Errorf("federated credential %s: %w", fc.Name, err)
		}
		keys.loose = append(keys.loose, ks...)
	}
	if keys.count() == 0 {
		return fmt.Errorf("federated credential %s: no issuer keys", fc.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.principals[fc.ClientID]; !ok {
		return fmt.Errorf("federated credential %s: unknown client ID %q", fc.Name, fc.ClientID)
	}
	s.federated = append(s.federated, federatedEntry{FederatedCredential: fc, keys: keys})
	return nil
}

// federatedFor returns the federated credentials of a client ID.
func (s *state) federatedFor(clientID string) []federatedEntry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []federatedEntry
	for _, f := range s.federated {
		if f.ClientID == clientID {
			out = append(out, f)
		}
	}
	return out
}

func (s *state) addPodIdentity(p PodIdentity) error {
	if p.Namespace == "" || p.ClientID == "" {
		return fmt.Errorf("pod identity: namespace and clientID are required")
	}
	if _, err := path.Match(p.Pod, ""); err != nil {
		return fmt.Errorf("pod identity: invalid pod glob %q: %w", p.Pod, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods = append(s.pods, p)
	return nil
}

// podIdentity returns the first mapping matching the pod.
func (s *state) podIdentity(namespace, pod string) (PodIdentity, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.pods {
		if p.Namespace != namespace {
			continue
		}
		if p.Pod == "" || p.Pod == "*" {
			return p, true
		}
		if ok, _ := path.Match(p.Pod, pod); ok {
			return p, true
		}
	}
	return PodIdentity{}, false
}

func (s *state) addManagedIdentity(m ManagedIdentity) error {
	if _, ok := s.principal(m.ClientID); !ok {
		if err := s.addPrincipal(Principal{ClientID: m.ClientID, ObjectID: m.ObjectID, Tenant: m.Tenant}); err != nil {
			return fmt.Errorf("managed identity: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.managed = append(s.managed, m)
	return nil
}

// managedIdentity finds a managed identity by client ID, or the default one for "".
func (s *state) managedIdentity(clientID string) (ManagedIdentity, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.managed {
		if clientID != "" && m.ClientID == clientID {
			return m, true
		}
	}
	if clientID != "" {
		return ManagedIdentity{}, false
	}
	for _, m := range s.managed {
		if m.Default {
			return m, true
		}
	}
	if len(s.managed) == 1 {
		return s.managed[0], true
	}
	return ManagedIdentity{}, false
}
