package emulator

import (
	"net"
	"net/http"
	"strconv"
	"time"
)

// nmiTokenPath is the NMI token path (AAD Pod Identity's /host/token/).
const nmiTokenPath = "/host/token/"

// NMI request headers.
const (
	nmiPodNameHeader = "podname"
	nmiPodNSHeader   = "podns"
)

// nmiToken is the token object of an NMI response; numbers are strings, as NMI sends
// them (adal.Token).
type nmiToken struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    string `json:"expires_in"`
	ExpiresOn    string `json:"expires_on"`
	NotBefore    string `json:"not_before"`
	Resource     string `json:"resource"`
	Type         string `json:"token_type"`
}

type nmiResponse struct {
	Token    nmiToken `json:"token"`
	ClientID string   `json:"clientid"`
}

// nmiHandler serves GET /host/token/?resource=... with podname/podns headers:
// 403 for callers that are not on loopback, 400 for missing headers or resource,
// 404 when no identity is mapped to the pod, 403 when no token can be issued for it.
func (e *Emulator) nmiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+nmiTokenPath, e.nmiToken)
	mux.HandleFunc("GET /host/token", e.nmiToken)
	return mux
}

func (e *Emulator) nmiToken(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		e.log.Info("NMI request refused: caller not on loopback", "remote", r.RemoteAddr)
		http.Error(w, "request remote address is not from localhost", http.StatusForbidden)
		return
	}
	ns, pod := r.Header.Get(nmiPodNSHeader), r.Header.Get(nmiPodNameHeader)
	e.nmiCounts.inc(Key{Vault: ns, Object: pod})
	resource := r.URL.Query().Get("resource")
	if ns == "" || pod == "" {
		http.Error(w, "missing podname and podns from request", http.StatusBadRequest)
		return
	}
	if resource == "" {
		http.Error(w, "parameter resource cannot be empty", http.StatusBadRequest)
		return
	}
	id, ok := e.state.podIdentity(ns, pod)
	if !ok {
		e.log.V(1).Info("NMI: no identity for pod", "pod", ns+"/"+pod)
		http.Error(w, "no azure identity found for request clientID ", http.StatusNotFound)
		return
	}
	p, ok := e.state.principal(id.ClientID)
	if !ok {
		e.log.Info("NMI: identity has no principal", "pod", ns+"/"+pod, "clientID", id.ClientID)
		http.Error(w, "failed to get service principal token for pod:"+ns+"/"+pod, http.StatusForbidden)
		return
	}
	now := e.clock()
	exp := now.Add(e.lifetime)
	tok, err := e.mint(TokenOptions{Tenant: p.Tenant, ClientID: p.ClientID, ObjectID: p.ObjectID,
		Audience: resource, IssuedAt: now, Expiry: exp})
	if err != nil {
		http.Error(w, "failed to get service principal token for pod:"+ns+"/"+pod, http.StatusForbidden)
		return
	}
	e.log.V(1).Info("NMI token issued", "pod", ns+"/"+pod, "clientID", p.ClientID, "resource", resource)
	writeJSON(w, http.StatusOK, nmiResponse{ClientID: p.ClientID, Token: nmiToken{
		AccessToken: tok, ExpiresIn: strconv.Itoa(int(e.lifetime / time.Second)),
		ExpiresOn: strconv.FormatInt(exp.Unix(), 10), NotBefore: strconv.FormatInt(now.Unix(), 10),
		Resource: resource, Type: "Bearer",
	}})
}

// NMIRequests is the number of NMI token requests from loopback for a pod, whatever
// their outcome (namespace and pod as sent in the podns and podname headers).
func (e *Emulator) NMIRequests(namespace, pod string) int {
	return e.nmiCounts.get(Key{Vault: namespace, Object: pod})
}
