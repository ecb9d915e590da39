package emulator

import (
	"net/http"
	"strconv"
	"time"
)

// imdsTokenPath is the IMDS managed identity token path.
const imdsTokenPath = "/metadata/identity/oauth2/token"

type imdsResponse struct {
	AccessToken  string `json:"access_token"`
	ClientID     string `json:"client_id"`
	ExpiresIn    string `json:"expires_in"`
	ExpiresOn    string `json:"expires_on"`
	ExtExpiresIn string `json:"ext_expires_in"`
	NotBefore    string `json:"not_before"`
	Resource     string `json:"resource"`
	TokenType    string `json:"token_type"`
}

type imdsError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// imdsHandler serves GET /metadata/identity/oauth2/token?api-version&resource
// [&client_id|object_id]: 400 without the Metadata: true header, api-version or
// resource, 400 "Identity not found" for an unknown identity.
func (e *Emulator) imdsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(imdsTokenPath, e.imdsToken)
	return mux
}

func (e *Emulator) imdsToken(w http.ResponseWriter, r *http.Request) {
	bad := func(desc string) {
		writeJSON(w, http.StatusBadRequest, imdsError{Error: "invalid_request", Description: desc})
	}
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, imdsError{Error: "invalid_request", Description: "The request method is not supported."})
		return
	}
	if r.Header.Get("Metadata") != "true" {
		bad("Required metadata header not specified")
		return
	}
	q := r.URL.Query()
	if q.Get("api-version") == "" {
		bad("Required query variable 'api-version' is missing")
		return
	}
	resource := q.Get("resource")
	if resource == "" {
		bad("Required audience parameter not specified")
		return
	}
	clientID := q.Get("client_id")
	if oid := q.Get("object_id"); clientID == "" && oid != "" {
		clientID = e.clientIDForObject(oid)
		if clientID == "" {
			bad("Identity not found")
			return
		}
	}
	m, ok := e.state.managedIdentity(clientID)
	if !ok {
		bad("Identity not found")
		return
	}
	p, ok := e.state.principal(m.ClientID)
	if !ok {
		bad("Identity not found")
		return
	}
	now := e.clock()
	exp := now.Add(e.lifetime)
	tok, err := e.mint(TokenOptions{Tenant: p.Tenant, ClientID: p.ClientID, ObjectID: p.ObjectID,
		Audience: resource, IssuedAt: now, Expiry: exp})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, imdsError{Error: "unknown_error", Description: "token signing failed"})
		return
	}
	secs := strconv.Itoa(int(e.lifetime / time.Second))
	e.log.V(1).Info("IMDS token issued", "clientID", p.ClientID, "resource", resource)
	writeJSON(w, http.StatusOK, imdsResponse{
		AccessToken: tok, ClientID: p.ClientID, ExpiresIn: secs, ExtExpiresIn: secs,
		ExpiresOn: strconv.FormatInt(exp.Unix(), 10), NotBefore: strconv.FormatInt(now.Unix(), 10),
		Resource: resource, TokenType: "Bearer",
	})
}

func (e *Emulator) clientIDForObject(oid string) string {
	e.state.mu.RLock()
	defer e.state.mu.RUnlock()
	for _, m := range e.state.managed {
		if p, ok := e.state.principals[m.ClientID]; ok && p.ObjectID == oid {
			return m.ClientID
		}
	}
	return ""
}
