package csi

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeAPIServer serves one SecretProviderClass and records posted events.
func fakeAPIServer(t *testing.T) (*httptest.Server, *[]map[string]any) {
	t.Helper()
	var mu sync.Mutex
	var events []map[string]any
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer api-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == SecretProviderClassAPI+"/namespaces/default/secretproviderclasses/azure-kvname":
			_, _ = io.WriteString(w, `{"spec":{"provider":"azure","parameters":{"keyvaultName":"kv1","usePodIdentity":"true","objects":"array: []"}}}`)
		case r.Method == http.MethodGet && r.URL.Path == SecretProviderClassAPI+"/namespaces/default/secretproviderclasses/numbers":
			_, _ = io.WriteString(w, `{"spec":{"provider":"azure","parameters":{"keyvaultName":7}}}`)
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces/default/events":
			var ev map[string]any
			_ = json.NewDecoder(r.Body).Decode(&ev)
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"kind":"Status","reason":"NotFound","message":"not found"}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &events
}

func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKubeClient(t *testing.T) {
	t.Parallel()
	srv, events := fakeAPIServer(t)
	dir := t.TempDir()
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	writeTestFile(t, dir, "ca.crt", ca)
	writeTestFile(t, dir, "token", "api-token\n")
	kubeconfig := writeTestFile(t, dir, "kubeconfig", `apiVersion: v1
kind: Config
current-context: test
clusters:
- name: c
  cluster:
    server: `+srv.URL+`
    certificate-authority: ca.crt
users:
- name: u
  user:
    tokenFile: token
contexts:
- name: test
  context: {cluster: c, user: u}
`)
	kc, err := NewKubeClient(KubeClientOptions{Kubeconfig: kubeconfig, Component: "secrets-store.kvinject.io", Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	params, err := kc.Parameters(t.Context(), "default", "azure-kvname")
	if err != nil || len(params) != 3 || params["keyvaultName"] != "kv1" || params["objects"] != "array: []" {
		t.Fatalf("Parameters = %v, %v", params, err)
	}
	for name, want := range map[string]string{
		"missing": "SecretProviderClass default/missing not found: create it in the pod's namespace",
		"numbers": "SecretProviderClass default/numbers: spec.parameters.keyvaultName must be a string",
	} {
		if _, err := kc.Parameters(t.Context(), "default", name); !errors.Is(err, ErrClass) || err.Error() != want {
			t.Errorf("Parameters(%s) = %v, want %q", name, err, want)
		}
	}
	kc.Event(t.Context(), PodInfo{Name: "web", Namespace: "default", UID: "u-1"}, EventWarning, ReasonRefreshFailed, "refresh failed")
	if len(*events) != 1 {
		t.Fatalf("events %v", *events)
	}
	ev := (*events)[0]
	inv := ev["involvedObject"].(map[string]any)
	if ev["reason"] != ReasonRefreshFailed || ev["message"] != "refresh failed" || ev["type"] != "Warning" || inv["uid"] != "u-1" || inv["kind"] != "Pod" {
		t.Fatalf("event %v", ev)
	}

	for _, tc := range []struct{ name, config, want string }{
		{"exec plugin", "clusters: [{name: c, cluster: {server: " + srv.URL + "}}]\nusers: [{name: u, user: {exec: {command: x}}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n", "exec and auth-provider credentials are not supported"},
		{"http server", "clusters: [{name: c, cluster: {server: http://x}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n", "must be an https URL"},
		{"no context", "clusters: []\n", "no cluster for context"},
	} {
		_, err := NewKubeClient(KubeClientOptions{Kubeconfig: writeTestFile(t, dir, "bad", tc.config)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
