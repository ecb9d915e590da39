package csi

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvinject/kvinject/pkg/policy"
)

// policyAPI is an API server that serves KeyVaultAccessPolicies: a list, then one watch
// request at a time, each answering with the events queued for it; and a namespace.
type policyAPI struct {
	mu       sync.Mutex
	listCode int      // answer to a list, 200 when 0
	lists    int      // lists served
	items    []string // JSON objects of the next list
	watches  chan []string
	nsGets   int
}

func (a *policyAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == PolicyAPI && r.URL.Query().Get("watch") == "":
		a.mu.Lock()
		a.lists++
		code, items := a.listCode, strings.Join(a.items, ",")
		a.mu.Unlock()
		if code != 0 {
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"kind":"Status","code":%d,"reason":"NotFound","message":"the server could not find the requested resource"}`, code)
			return
		}
		fmt.Fprintf(w, `{"metadata":{"resourceVersion":"10"},"items":[%s]}`, items)
	case r.URL.Path == PolicyAPI:
		select {
		case events := <-a.watches:
			for _, e := range events {
				fmt.Fprintln(w, e)
			}
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
		}
	case r.URL.Path == "/api/v1/namespaces/team-a":
		a.mu.Lock()
		a.nsGets++
		a.mu.Unlock()
		fmt.Fprint(w, `{"metadata":{"name":"team-a","labels":{"team":"a"}}}`)
	default:
		http.NotFound(w, r)
	}
}

func policyJSON(name, rv string, vaults ...string) string {
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"name": name, "resourceVersion": rv},
		"spec": map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]string{"team": "a"}}, "vaults": vaults}})
	return string(b)
}

func event(typ, obj string) string { return fmt.Sprintf(`{"type":%q,"object":%s}`, typ, obj) }

func newPolicyTestClient(t *testing.T, api http.Handler) *KubeClient {
	t.Helper()
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	writeTestFile(t, dir, "ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	kubeconfig := writeTestFile(t, dir, "kubeconfig", `apiVersion: v1
kind: Config
current-context: test
clusters:
- {name: c, cluster: {server: `+srv.URL+`, certificate-authority: ca.crt}}
users:
- {name: u, user: {token: t}}
contexts:
- {name: test, context: {cluster: c, user: u}}
`)
	kc, err := NewKubeClient(KubeClientOptions{Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// TestKubePoliciesWatch: the plugin lists, then follows the watch (added, modified,
// deleted, bookmarks), lists again when the watch is too old, and refuses until the
// first list succeeds, naming the missing CRD.
func TestKubePoliciesWatch(t *testing.T) {
	api := &policyAPI{listCode: http.StatusNotFound, watches: make(chan []string, 4)}
	p := NewKubePolicies(newPolicyTestClient(t, api), nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	pod := PodInfo{Name: "app", Namespace: "team-a", UID: "u1"}
	ask := func(vault string) policy.Result {
		c, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond) // do not wait for the first list
		defer cancel()
		return p.Check(c, pod, policy.Request{Vault: vault}, false)
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10s: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	denied := func(vault string) string {
		if d := ask(vault).Denied; d != nil {
			return d.Error()
		}
		return ""
	}

	const missing = `KeyVaultAccessPolicies cannot be read (the API server does not serve /apis/kvinject.io/v1alpha1/keyvaultaccesspolicies: install the KeyVaultAccessPolicy CRD (the chart installs it; or kubectl apply -f deploy/policy/)), so kvinject allows nothing until they can`
	eventually("refused without the CRD", func() bool { return denied("team-a-kv") == missing })

	api.mu.Lock()
	api.listCode, api.items = 0, []string{policyJSON("team-a", "9", "team-a-*")}
	api.mu.Unlock()
	eventually("listed after the retry", func() bool { return denied("team-a-kv") == "" })
	if got := denied("team-b-kv"); !strings.Contains(got, `may not use vault "team-b-kv"`) {
		t.Fatalf("denial %q", got)
	}

	api.watches <- []string{
		event("MODIFIED", policyJSON("team-a", "11", "team-a-*", "team-b-kv")),
		event("BOOKMARK", `{"metadata":{"resourceVersion":"12"}}`),
	}
	eventually("modified by the watch", func() bool { return denied("team-b-kv") == "" })
	api.watches <- []string{event("DELETED", policyJSON("team-a", "13"))}
	eventually("deleted by the watch", func() bool { return denied("other-kv") == "" })
	api.mu.Lock()
	if api.nsGets != 1 {
		t.Errorf("namespace read %d times, want once (cached)", api.nsGets)
	}
	api.mu.Unlock()

	api.mu.Lock()
	lists := api.lists
	api.items = []string{policyJSON("team-a", "20", "only-kv")}
	api.mu.Unlock()
	api.watches <- []string{`{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version"}}`}
	eventually("listed again after 410", func() bool {
		api.mu.Lock()
		defer api.mu.Unlock()
		return api.lists > lists
	})
	eventually("the new list applies", func() bool { return strings.Contains(denied("team-a-kv"), `may not use vault "team-a-kv"`) })
	cancel()
	<-done
}

func TestLabelCacheBounded(t *testing.T) {
	c := labelCache{max: 3}
	now := time.Now()
	for i := range 10 {
		c.put(fmt.Sprint(i), map[string]string{"i": fmt.Sprint(i)}, now)
	}
	if len(c.entries) != 3 {
		t.Fatalf("%d entries, want at most 3", len(c.entries))
	}
	if l, ok := c.get("9", now); !ok || l["i"] != "9" {
		t.Fatalf("latest entry: %v %v", l, ok)
	}
	if _, ok := c.get("9", now.Add(PolicyLabelTTL)); ok {
		t.Fatal("an entry outlived PolicyLabelTTL")
	}
}
