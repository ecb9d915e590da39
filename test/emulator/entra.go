package emulator

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Form values of the token endpoint.
const (
	grantClientCredentials = "client_credentials"
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// entraError is an Entra ID (AADSTS) error, in the JSON shape of the real service.
type entraError struct {
	status int
	err    string // OAuth error: invalid_request, invalid_client, ...
	code   int    // AADSTS number
	desc   string
}

type entraErrorBody struct {
	Error         string `json:"error"`
	Description   string `json:"error_description"`
	ErrorCodes    []int  `json:"error_codes"`
	Timestamp     string `json:"timestamp"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
	ErrorURI      string `json:"error_uri"`
}

func (e *Emulator) writeEntraError(w http.ResponseWriter, host string, ee *entraError) {
	now := e.clock().UTC().Format("2006-01-02 15:04:05Z")
	trace, corr := derivedID("trace", newVersionID()), derivedID("corr", newVersionID())
	writeJSON(w, ee.status, entraErrorBody{
		Error: ee.err,
		Description: fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			ee.code, ee.desc, trace, corr, now),
		ErrorCodes: []int{ee.code}, Timestamp: now, TraceID: trace, CorrelationID: corr,
		ErrorURI: fmt.Sprintf("https://%s/error?code=%d", host, ee.code),
	})
}

func errTenantNotFound(tenant string) *entraError {
	return &entraError{http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf(
		"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", tenant)}
}

func errMissingParam(name string) *entraError {
	return &entraError{http.StatusBadRequest, "invalid_request", 900144, fmt.Sprintf(
		"The request body must contain the following parameter: '%s'.", name)}
}

func errAppNotFound(clientID, tenant string) *entraError {
	return &entraError{http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
		"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, tenant)}
}

func errBadSecret(clientID string) *entraError {
	return &entraError{http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf(
		"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID)}
}

const wifDocs = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"

// entraMuxFor registers the Entra ID routes.
func (e *Emulator) newEntraMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", e.openIDConfiguration)
	mux.HandleFunc("GET /{tenant}/.well-known/openid-configuration", e.openIDConfiguration)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", e.signingKeys)
	mux.HandleFunc("GET /{tenant}/discovery/keys", e.signingKeys)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", e.tokenEndpoint)
	mux.HandleFunc("POST /{tenant}/oauth2/token", e.tokenEndpoint)
	return mux
}

func requestHost(r *http.Request) string {
	host := r.Host
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	return strings.ToLower(host)
}

// resolveTenant accepts a tenant ID or name; common and organizations are accepted
// for discovery only.
func (e *Emulator) resolveTenant(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := r.PathValue("tenant")
	if id, ok := e.state.tenantID(t); ok {
		return id, true
	}
	e.writeEntraError(w, requestHost(r), errTenantNotFound(t))
	return "", false
}

func (e *Emulator) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	tenant, ok := e.resolveTenant(w, r)
	if !ok {
		return
	}
	base := "https://" + requestHost(r) + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/v2.0",
		"request_uri_parameter_supported":       false,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"tenant_region_scope":                   "NA",
		"cloud_instance_name":                   strings.TrimPrefix(requestHost(r), "login."),
		"cloud_graph_host_name":                 "graph.windows.net",
		"msgraph_host":                          "graph.microsoft.com",
	})
}

func (e *Emulator) signingKeys(w http.ResponseWriter, r *http.Request) {
	if _, ok := e.resolveTenant(w, r); !ok {
		return
	}
	writeJSON(w, http.StatusOK, e.signer.jwks())
}

type tokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	ExtExpiresIn int    `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
}

// tokenEndpoint serves the client credentials grant with a client secret or a federated
// client assertion.
func (e *Emulator) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	host := requestHost(r)
	fail := func(ee *entraError) {
		e.log.V(1).Info("Entra token request refused", "code", ee.code, "status", ee.status)
		e.writeEntraError(w, host, ee)
	}
	tenant, ok := e.resolveTenant(w, r)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(&entraError{http.StatusBadRequest, "invalid_request", 900144, "The request body must be form-encoded."})
		return
	}
	f := r.PostForm
	if gt := f.Get("grant_type"); gt == "" {
		fail(errMissingParam("grant_type"))
		return
	} else if gt != grantClientCredentials {
		fail(&entraError{http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf(
			"The app requested an unsupported grant type '%s'.", gt)})
		return
	}
	clientID := f.Get("client_id")
	if clientID == "" {
		fail(errMissingParam("client_id"))
		return
	}
	resource, ee := tokenResource(f.Get("scope"), f.Get("resource"))
	if ee != nil {
		fail(ee)
		return
	}
	p, ok := e.state.principal(clientID)
	if !ok || p.Tenant != tenant {
		fail(errAppNotFound(clientID, tenant))
		return
	}
	e.tokenCounts.inc(Key{Object: tenant, Caller: clientID})
	switch {
	case f.Get("client_secret") != "":
		if p.ClientSecret == "" || f.Get("client_secret") != p.ClientSecret {
			fail(errBadSecret(clientID))
			return
		}
	case f.Get("client_assertion") != "":
		if t := f.Get("client_assertion_type"); t != assertionTypeJWTBearer {
			fail(&entraError{http.StatusBadRequest, "invalid_request", 700023, fmt.Sprintf(
				"Client assertion type '%s' is not supported; use '%s'.", t, assertionTypeJWTBearer)})
			return
		}
		if ee := e.checkAssertion(clientID, f.Get("client_assertion")); ee != nil {
			fail(ee)
			return
		}
	default:
		fail(&entraError{http.StatusUnauthorized, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'."})
		return
	}
	tok, err := e.mint(TokenOptions{Tenant: tenant, ClientID: clientID, ObjectID: p.ObjectID, Audience: resource})
	if err != nil {
		fail(&entraError{http.StatusInternalServerError, "server_error", 90000, "Token signing failed."})
		return
	}
	e.log.V(1).Info("Entra token issued", "tenant", tenant, "clientID", clientID, "resource", resource)
	secs := int(e.lifetime / time.Second)
	writeJSON(w, http.StatusOK, tokenResponse{TokenType: "Bearer", ExpiresIn: secs, ExtExpiresIn: secs, AccessToken: tok})
}

// tokenResource derives the token audience from a v2 scope list (the one scope with
// /.default) or a v1 resource parameter.
func tokenResource(scope, resource string) (string, *entraError) {
	if scope == "" {
		if resource != "" {
			return strings.TrimSuffix(resource, "/"), nil
		}
		return "", errMissingParam("scope")
	}
	for _, s := range strings.Fields(scope) {
		if r, ok := strings.CutSuffix(s, "/.default"); ok && r != "" {
			return r, nil
		}
	}
	return "", &entraError{http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf(
		"The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope)}
}

// checkAssertion verifies a federated client assertion: issuer, signature, lifetime,
// then subject and audience against the application's federated credentials.
func (e *Emulator) checkAssertion(clientID, raw string) *entraError {
	var unverified jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &unverified); err != nil {
		return &entraError{http.StatusBadRequest, "invalid_request", 50027, "JWT token is invalid or malformed."}
	}
	aud := strings.Join(unverified.Audience, ",")
	sub := unverified.Subject
	var byIssuer []federatedEntry
	for _, fc := range e.state.federatedFor(clientID) {
		if fc.Issuer == unverified.Issuer {
			byIssuer = append(byIssuer, fc)
		}
	}
	if len(byIssuer) == 0 {
		return &entraError{http.StatusBadRequest, "invalid_client", 700211, fmt.Sprintf(
			"No matching federated identity record found for presented assertion issuer '%s'. Please note that the matching is done using a case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. %s", unverified.Issuer, wifDocs)}
	}
	now := e.clock()
	verified := false
	for _, fc := range byIssuer {
		var claims jwt.RegisteredClaims
		err := verifyJWT(raw, fc.keys, now, &claims)
		switch {
		case errors.Is(err, errTokenExpired), errors.Is(err, errTokenNotYetValid):
			return &entraError{http.StatusBadRequest, "invalid_client", 700024, fmt.Sprintf(
				"Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
				now.UTC().Format(time.RFC3339), fmtNumeric(unverified.NotBefore), fmtNumeric(unverified.ExpiresAt))}
		case err != nil:
			continue
		}
		verified = true
		if fc.Subject == sub && slicesContain(unverified.Audience, fc.Audience) {
			return nil
		}
	}
	if !verified {
		return &entraError{http.StatusUnauthorized, "invalid_client", 50013, fmt.Sprintf(
			"Assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '%s']", assertionKid(raw))}
	}
	return &entraError{http.StatusBadRequest, "invalid_request", 70021, fmt.Sprintf(
		"No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'. %s",
		unverified.Issuer, sub, aud, wifDocs)}
}

func slicesContain(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func fmtNumeric(d *jwt.NumericDate) string {
	if d == nil {
		return "(none)"
	}
	return d.UTC().Format(time.RFC3339)
}

func assertionKid(raw string) string {
	t, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return ""
	}
	kid, _ := t.Header["kid"].(string)
	return kid
}

// TokenRequests is the number of token endpoint requests for a client ID in a tenant
// that got past the tenant, grant, scope and application checks (issued, or refused
// for bad credentials). NMI and IMDS tokens are not counted here.
func (e *Emulator) TokenRequests(tenant, clientID string) int {
	return e.tokenCounts.get(Key{Object: tenant, Caller: clientID})
}
