package emulator

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// kvContext is what the Key Vault handlers know about a request.
type kvContext struct {
	vault    vaultInfo
	host     string // request host without port, e.g. demo.vault.azure.net
	claims   *accessClaims
	policies permissions
}

// serviceVersion is sent as x-ms-keyvault-service-version.
const serviceVersion = "1.9.0.0-emulator"

type vaultInfo struct {
	name, tenant, location string
	cloud                  Cloud
}

type kvContextKey struct{}

func kvFrom(ctx context.Context) *kvContext { return ctx.Value(kvContextKey{}).(*kvContext) }

// keyVaultMux routes Key Vault paths. Every route is registered for the three types
// where Key Vault has it.
func (e *Emulator) keyVaultMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, typ := range []ObjectType{ObjectSecret, ObjectKey, ObjectCertificate} {
		p := "/" + string(typ)
		mux.HandleFunc("GET "+p, e.kvListObjects(typ))
		mux.HandleFunc("GET "+p+"/{$}", e.kvListObjects(typ))
		mux.HandleFunc("GET "+p+"/{name}/versions", e.kvListVersions(typ))
		mux.HandleFunc("GET "+p+"/{name}", e.kvGet(typ))
		mux.HandleFunc("GET "+p+"/{name}/{$}", e.kvGet(typ))
		mux.HandleFunc("GET "+p+"/{name}/{version}", e.kvGet(typ))
	}
	mux.HandleFunc("PUT /secrets/{name}", e.kvSetSecret)
	return mux
}

// serveKeyVault authenticates, counts, applies faults and dispatches a Key Vault request.
func (e *Emulator) serveKeyVault(w http.ResponseWriter, r *http.Request, host, vaultName string, cloud Cloud) {
	typ, object := kvPathObject(r.URL.Path)
	v, ok := e.vaultInfo(vaultName)
	if !ok || v.cloud != cloud {
		e.counters.inc(Key{Vault: vaultName, Object: object})
		errVaultNotFound(host).write(w, "")
		return
	}
	challenge := kvChallenge(v)
	h := w.Header()
	h.Set("x-ms-request-id", derivedID("req", newVersionID()))
	h.Set("x-ms-keyvault-region", v.location)
	h.Set("x-ms-keyvault-service-version", serviceVersion)
	claims, kerr := e.authenticate(r, v)
	caller := ""
	if kerr == nil {
		caller = claims.AppID
	}
	e.counters.inc(Key{Vault: v.name, Object: object, Caller: caller})
	if kerr != nil {
		e.log.V(1).Info("Key Vault request refused", "vault", v.name, "path", r.URL.Path, "status", kerr.status, "reason", kerr.message)
		kerr.write(w, challenge)
		return
	}
	if f, ok := e.faults.take(v.name, typ, object); ok {
		if e.applyFault(w, r, f) {
			e.log.V(1).Info("Key Vault fault injected", "vault", v.name, "object", object, "caller", caller, "status", f.Status, "reset", f.Reset)
			return
		}
	}
	kc := &kvContext{vault: v, host: host, claims: claims, policies: e.policiesOf(v.name, claims.OID)}
	r = r.WithContext(context.WithValue(r.Context(), kvContextKey{}, kc))
	mux := e.kvMux
	if _, pattern := mux.Handler(r); pattern == "" {
		errBadParameter(r.Method+" "+r.URL.Path+" is not supported by this emulator.").write(w, "")
		return
	}
	mux.ServeHTTP(w, r)
}

// kvPathObject extracts the object type and name from a path such as
// /secrets/name/version ("" when the path names none).
func kvPathObject(p string) (ObjectType, string) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) == 0 {
		return "", ""
	}
	typ := ObjectType(parts[0])
	if typ != ObjectSecret && typ != ObjectKey && typ != ObjectCertificate {
		return "", ""
	}
	if len(parts) < 2 {
		return typ, ""
	}
	return typ, parts[1]
}

// kvChallenge is the WWW-Authenticate value of a vault's 401 responses.
func kvChallenge(v vaultInfo) string {
	authority := "https://login.windows.net/" + v.tenant
	if v.cloud != PublicCloud {
		authority = "https://" + v.cloud.LoginHost + "/" + v.tenant
	}
	return `Bearer authorization="` + authority + `", resource="` + v.cloud.Resource() + `"`
}

func (e *Emulator) vaultInfo(name string) (vaultInfo, bool) {
	e.state.mu.RLock()
	defer e.state.mu.RUnlock()
	v, err := e.state.vaultLocked(name)
	if err != nil {
		return vaultInfo{}, false
	}
	return vaultInfo{name: v.name, tenant: v.tenant, location: v.location, cloud: v.cloud}, true
}

func (e *Emulator) policiesOf(vaultName, oid string) permissions {
	e.state.mu.RLock()
	defer e.state.mu.RUnlock()
	v, err := e.state.vaultLocked(vaultName)
	if err != nil {
		return nil
	}
	return v.policies[oid]
}

// entraKeys are the keys access tokens may be signed with.
func (e *Emulator) entraKeys() issuerKeys {
	return issuerKeys{byKid: map[string]crypto.PublicKey{e.signer.kid: e.signer.key.Public()}}
}

// authenticate validates the bearer token of a Key Vault request as the service does:
// signature, lifetime, audience, issuer and tenant.
func (e *Emulator) authenticate(r *http.Request, v vaultInfo) (*accessClaims, *kvError) {
	auth := r.Header.Get("Authorization")
	scheme, raw, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return nil, errUnauth(msgMissingToken)
	}
	raw = strings.TrimSpace(raw)
	var c accessClaims
	switch err := verifyJWT(raw, e.entraKeys(), e.clock(), &c); {
	case err == nil:
	case errors.Is(err, errTokenUnknownKey):
		header, _, _ := strings.Cut(raw, ".")
		return nil, errUnknownKey(header)
	case errors.Is(err, errTokenExpired):
		return nil, errUnauth(msgTokenExpired)
	case errors.Is(err, errTokenNotYetValid):
		return nil, errUnauth(msgTokenNotYet)
	case errors.Is(err, errTokenSignature):
		return nil, errUnauth(msgBadSignature)
	default:
		return nil, errUnauth(msgMissingToken)
	}
	resource := v.cloud.Resource()
	aud := ""
	if len(c.Audience) > 0 {
		aud = c.Audience[0]
	}
	if aud != resource && aud != resource+"/" {
		return nil, errAudience(resource, aud)
	}
	want := stsIssuer(v.tenant)
	if c.Issuer != want || c.TID != v.tenant {
		return nil, errIssuer(want, c.Issuer)
	}
	return &c, nil
}

// applyFault delays and possibly answers a request; it reports whether it answered.
func (e *Emulator) applyFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	f = f.draw()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	if f.Reset {
		resetConnection(w)
		return true
	}
	if f.Status == 0 {
		return false
	}
	f.retryHeaders(w.Header())
	errFault(f.Status).write(w, "")
	return true
}

// resetConnection closes the client connection with a TCP RST.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	raw := conn
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		raw = nc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

// allowed checks an access policy permission, writing the 403 when it is missing.
func allowed(w http.ResponseWriter, kc *kvContext, typ ObjectType, perm string) bool {
	if kc.policies[string(typ)+"/"+perm] {
		return true
	}
	errPolicy(kc.claims, typ, perm, kc.vault.name, kc.vault.location).write(w, "")
	return false
}

// --- bodies ---------------------------------------------------------------------------

type kvAttributes struct {
	Enabled         bool   `json:"enabled"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         int64  `json:"created"`
	Updated         int64  `json:"updated"`
	RecoveryLevel   string `json:"recoveryLevel"`
	RecoverableDays int    `json:"recoverableDays"`
	Exportable      *bool  `json:"exportable,omitempty"`
}

func attributesOf(v *version) kvAttributes {
	a := kvAttributes{Enabled: v.enabled, Created: v.created.Unix(), Updated: v.updated.Unix(),
		RecoveryLevel: recoveryLevel, RecoverableDays: recoverableDays}
	if !v.nbf.IsZero() {
		n := v.nbf.Unix()
		a.NotBefore = &n
	}
	if !v.exp.IsZero() {
		x := v.exp.Unix()
		a.Expires = &x
	}
	return a
}

func objectURL(host string, typ ObjectType, name, ver string) string {
	u := "https://" + host + "/" + string(typ) + "/" + name
	if ver != "" {
		u += "/" + ver
	}
	return u
}

type secretBody struct {
	Value       *string           `json:"value,omitempty"`
	ID          string            `json:"id"`
	ContentType string            `json:"contentType,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Attributes  kvAttributes      `json:"attributes"`
	Kid         string            `json:"kid,omitempty"`
	Managed     bool              `json:"managed,omitempty"`
}

func secretJSON(host, name string, v *version, withValue bool) secretBody {
	b := secretBody{ID: objectURL(host, ObjectSecret, name, v.id), ContentType: v.contentType,
		Tags: v.tags, Attributes: attributesOf(v), Managed: v.managed}
	if withValue {
		val := v.value
		b.Value = &val
	}
	if v.managed {
		b.Kid = objectURL(host, ObjectKey, name, v.id)
	}
	return b
}

type keyBody struct {
	Key        jsonWebKey        `json:"key"`
	Attributes kvAttributes      `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	Managed    bool              `json:"managed,omitempty"`
}

func keyJSON(host, name string, v *version) keyBody {
	k := *v.jwk
	k.Kid = objectURL(host, ObjectKey, name, v.id)
	a := attributesOf(v)
	f := false
	a.Exportable = &f
	return keyBody{Key: k, Attributes: a, Tags: v.tags, Managed: v.managed}
}

type certBody struct {
	ID         string            `json:"id"`
	Kid        string            `json:"kid"`
	Sid        string            `json:"sid"`
	X5t        string            `json:"x5t"`
	Cer        string            `json:"cer"`
	Attributes kvAttributes      `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	Policy     map[string]any    `json:"policy,omitempty"`
}

func certJSON(host, name string, v *version) certBody {
	leaf := v.cert.chain[0]
	kty, size, crv := "RSA", 0, ""
	if jwk, err := publicJWK(leaf.PublicKey, nil); err == nil {
		kty, crv = jwk.Kty, jwk.Crv
		if kty == "RSA" {
			n, _ := b64url.DecodeString(jwk.N)
			size = len(n) * 8
		}
	}
	keyProps := map[string]any{"exportable": true, "kty": kty, "reuse_key": false}
	if size > 0 {
		keyProps["key_size"] = size
	} else {
		keyProps["crv"] = crv
	}
	issuer := "Self"
	if len(v.cert.chain) > 1 {
		issuer = "Unknown"
	}
	policy := map[string]any{
		"id":           "https://" + host + "/certificates/" + name + "/policy",
		"key_props":    keyProps,
		"secret_props": map[string]any{"contentType": v.contentType},
		"x509_props": map[string]any{
			"subject":         leaf.Subject.String(),
			"sans":            map[string]any{"dns_names": leaf.DNSNames},
			"ekus":            []string{"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"},
			"key_usage":       []string{"digitalSignature", "keyEncipherment"},
			"validity_months": int(leaf.NotAfter.Sub(leaf.NotBefore).Hours()/24/30) + 0,
		},
		"lifetime_actions": []any{map[string]any{"trigger": map[string]any{"lifetime_percentage": 80}, "action": map[string]any{"action_type": "AutoRenew"}}},
		"issuer":           map[string]any{"name": issuer},
		"attributes":       map[string]any{"enabled": true, "created": v.created.Unix(), "updated": v.updated.Unix()},
	}
	return certBody{
		ID:  objectURL(host, ObjectCertificate, name, v.id),
		Kid: objectURL(host, ObjectKey, name, v.id),
		Sid: objectURL(host, ObjectSecret, name, v.id),
		X5t: x5t(leaf.Raw), Cer: base64.StdEncoding.EncodeToString(leaf.Raw),
		Attributes: attributesOf(v), Tags: v.tags, Policy: policy,
	}
}

// listItem is one entry of a list response; which fields are set depends on the type.
func listItem(host string, typ ObjectType, name string, v *version, versioned bool) map[string]any {
	ver := ""
	if versioned {
		ver = v.id
	}
	item := map[string]any{"attributes": attributesOf(v)}
	if v.tags != nil {
		item["tags"] = v.tags
	}
	switch typ {
	case ObjectSecret:
		item["id"] = objectURL(host, typ, name, ver)
		if v.contentType != "" {
			item["contentType"] = v.contentType
		}
		if v.managed {
			item["managed"] = true
			item["kid"] = objectURL(host, ObjectKey, name, v.id)
		}
	case ObjectKey:
		item["kid"] = objectURL(host, typ, name, ver)
		if v.managed {
			item["managed"] = true
		}
	case ObjectCertificate:
		item["id"] = objectURL(host, typ, name, ver)
		item["x5t"] = x5t(v.cert.chain[0].Raw)
	}
	return item
}

// --- handlers ---------------------------------------------------------------------

func (e *Emulator) kvGet(typ ObjectType) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		kc := kvFrom(r.Context())
		if !allowed(w, kc, typ, "get") {
			return
		}
		name, verID := r.PathValue("name"), r.PathValue("version")
		e.state.mu.RLock()
		var (
			o   *object
			ver *version
		)
		if v, err := e.state.vaultLocked(kc.vault.name); err == nil {
			o = v.objects[typ][strings.ToLower(name)]
			if o != nil {
				ver = o.find(verID)
			}
		}
		var body any
		var kerr *kvError
		switch {
		case ver == nil:
			kerr = errObjectNotFound(typ, name)
		case !ver.enabled && typ != ObjectCertificate:
			kerr = errDisabled(typ)
		default:
			switch typ {
			case ObjectSecret:
				body = secretJSON(kc.host, o.name, ver, true)
			case ObjectKey:
				body = keyJSON(kc.host, o.name, ver)
			case ObjectCertificate:
				body = certJSON(kc.host, o.name, ver)
			}
		}
		e.state.mu.RUnlock()
		if kerr != nil {
			kerr.write(w, "")
			return
		}
		writeJSON(w, http.StatusOK, body)
	}
}

type listPage struct {
	Value    []map[string]any `json:"value"`
	NextLink *string          `json:"nextLink"`
}

func (e *Emulator) kvListObjects(typ ObjectType) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		kc := kvFrom(r.Context())
		if !allowed(w, kc, typ, "list") {
			return
		}
		var items []map[string]any
		e.state.mu.RLock()
		if v, err := e.state.vaultLocked(kc.vault.name); err == nil {
			names := make([]string, 0, len(v.objects[typ]))
			for k := range v.objects[typ] {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, n := range names {
				o := v.objects[typ][n]
				if ver := o.find(""); ver != nil {
					items = append(items, listItem(kc.host, typ, o.name, ver, false))
				}
			}
		}
		e.state.mu.RUnlock()
		e.writePage(w, r, kc, items)
	}
}

func (e *Emulator) kvListVersions(typ ObjectType) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		kc := kvFrom(r.Context())
		if !allowed(w, kc, typ, "list") {
			return
		}
		name := r.PathValue("name")
		var items []map[string]any
		e.state.mu.RLock()
		if v, err := e.state.vaultLocked(kc.vault.name); err == nil {
			if o := v.objects[typ][strings.ToLower(name)]; o != nil {
				for _, ver := range o.versions {
					items = append(items, listItem(kc.host, typ, o.name, ver, true))
				}
			}
		}
		e.state.mu.RUnlock()
		// Key Vault answers an empty list (not 404) for versions of an unknown object.
		e.writePage(w, r, kc, items)
	}
}

// writePage writes one page of items, honouring maxresults and $skiptoken, with a
// nextLink on the same host when more remain.
func (e *Emulator) writePage(w http.ResponseWriter, r *http.Request, kc *kvContext, items []map[string]any) {
	q := r.URL.Query()
	size := e.pageSize
	if m := q.Get("maxresults"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > 25 {
			errBadParameter("invalid maxresults: must be between 1 and 25").write(w, "")
			return
		}
		size = n
	}
	start := 0
	if tok := q.Get("$skiptoken"); tok != "" {
		n, err := decodeSkipToken(tok)
		if err != nil || n < 0 || n > len(items) {
			errBadParameter("invalid $skiptoken").write(w, "")
			return
		}
		start = n
	}
	end := min(start+size, len(items))
	page := listPage{Value: items[start:end]}
	if page.Value == nil {
		page.Value = []map[string]any{}
	}
	if end < len(items) {
		nq := url.Values{}
		if av := q.Get("api-version"); av != "" {
			nq.Set("api-version", av)
		}
		nq.Set("$skiptoken", encodeSkipToken(end))
		nq.Set("maxresults", strconv.Itoa(size))
		link := "https://" + kc.host + r.URL.Path + "?" + nq.Encode()
		page.NextLink = &link
	}
	writeJSON(w, http.StatusOK, page)
}

func encodeSkipToken(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(n)))
}

func decodeSkipToken(tok string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(string(b), "offset:")
	if !ok {
		return 0, errors.New("bad token")
	}
	return strconv.Atoi(s)
}

// kvSetSecret is PUT /secrets/{name}: a new version (permission secrets/set), so another
// process (the demo) can rotate secrets with the SDK's SetSecret.
func (e *Emulator) kvSetSecret(w http.ResponseWriter, r *http.Request) {
	kc := kvFrom(r.Context())
	if !allowed(w, kc, ObjectSecret, "set") {
		return
	}
	var req struct {
		Value       *string           `json:"value"`
		ContentType string            `json:"contentType"`
		Tags        map[string]string `json:"tags"`
		Attributes  *struct {
			Enabled *bool `json:"enabled"`
		} `json:"attributes"`
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || json.Unmarshal(data, &req) != nil || req.Value == nil {
		errBadParameter("The request body must be a JSON object with a value.").write(w, "")
		return
	}
	opts := SecretOptions{ContentType: req.ContentType, Tags: req.Tags}
	if req.Attributes != nil && req.Attributes.Enabled != nil {
		opts.Disabled = !*req.Attributes.Enabled
	}
	name := r.PathValue("name")
	id, err := e.state.setSecret(kc.vault.name, name, *req.Value, opts)
	if err != nil {
		errBadParameter(err.Error()).write(w, "")
		return
	}
	e.state.mu.RLock()
	var body secretBody
	if v, err := e.state.vaultLocked(kc.vault.name); err == nil {
		o := v.objects[ObjectSecret][strings.ToLower(name)]
		body = secretJSON(kc.host, o.name, o.find(id), true)
	}
	e.state.mu.RUnlock()
	writeJSON(w, http.StatusOK, body)
}
