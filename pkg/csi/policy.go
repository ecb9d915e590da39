package csi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/identity"
	"github.com/kvinject/kvinject/pkg/policy"
)

// PolicyChecker asks the cluster's KeyVaultAccessPolicies about a volume, before any
// token or Key Vault request. Implementations are safe for concurrent use.
type PolicyChecker interface {
	// Check answers for the pod's namespace. The returned error is set when the answer
	// could not be computed (it refuses, like policy.Result.Denied).
	Check(ctx context.Context, pod PodInfo, req policy.Request, podIdentity bool) policy.Result
}

// PolicyAPI is the path of the KeyVaultAccessPolicy resource (kvinject.io/v1alpha1).
const PolicyAPI = "/apis/kvinject.io/v1alpha1/keyvaultaccesspolicies"

// Bounds of KubePolicies.
const (
	// PolicyLabelTTL is how long the node reuses a namespace's or a pod's labels: a
	// change of a namespace's labels reaches the node's mounts within it. Policy objects
	// themselves are watched and apply within a second.
	PolicyLabelTTL = 30 * time.Second
	// policyLabelEntries bounds each label cache (namespaces, pods).
	policyLabelEntries = 4096
	// watchTimeout is how long one watch request lasts before the next.
	watchTimeout = 5 * time.Minute
)

// KubePolicies is the node plugin's view of the KeyVaultAccessPolicies: listed, then
// watched, from the API server; until the first list succeeds every volume is refused
// (a policy that cannot be read never allows). It reads a namespace's labels, and a
// pod's AAD Pod Identity label, only while some policy exists, and keeps them for
// PolicyLabelTTL.
type KubePolicies struct {
	kc      *KubeClient
	now     func() time.Time
	current atomic.Pointer[policy.Set]
	ready   chan struct{}

	namespaces labelCache // namespace -> labels
	pods       labelCache // pod UID -> aadpodidbinding label ("" for none)
}

// NewKubePolicies returns the checker; Run must be running for it to allow anything.
func NewKubePolicies(kc *KubeClient, now func() time.Time) *KubePolicies {
	if now == nil {
		now = time.Now
	}
	p := &KubePolicies{kc: kc, now: now, ready: make(chan struct{}),
		namespaces: labelCache{max: policyLabelEntries}, pods: labelCache{max: policyLabelEntries}}
	p.current.Store(policy.Unreadable(errors.New("the node plugin has not read them yet")))
	return p
}

// policyStartWait is how long a volume waits, when the plugin has just started, for
// the first list of the policies before it is refused: the kubelet calls a restarted
// plugin at once, and a refusal would be a FailedMount event for nothing.
const policyStartWait = 10 * time.Second

func (p *KubePolicies) waitReady(ctx context.Context) {
	select {
	case <-p.ready:
		return
	default:
	}
	t := time.NewTimer(policyStartWait)
	defer t.Stop()
	select {
	case <-p.ready:
	case <-ctx.Done():
	case <-t.C:
	}
}

// Ready is closed once the policies have been listed.
func (p *KubePolicies) Ready() <-chan struct{} { return p.ready }

// Check implements PolicyChecker.
func (p *KubePolicies) Check(ctx context.Context, pod PodInfo, req policy.Request, podIdentity bool) policy.Result {
	p.waitReady(ctx)
	set := p.current.Load()
	if set.Empty() {
		return policy.Result{}
	}
	if set.Err() != nil {
		return set.Namespace(pod.Namespace, nil).Check(req)
	}
	nsLabels, err := p.namespaceLabels(ctx, pod.Namespace)
	if err != nil {
		return policy.Unreadable(fmt.Errorf("the labels of namespace %q: %w", pod.Namespace, err)).Namespace(pod.Namespace, nil).Check(req)
	}
	rules := set.Namespace(pod.Namespace, nsLabels)
	if !rules.Governed() {
		return policy.Result{}
	}
	if podIdentity {
		sel, err := p.podIdentity(ctx, pod)
		if err != nil {
			return policy.Unreadable(fmt.Errorf("the labels of pod %s/%s: %w", pod.Namespace, pod.Name, err)).Namespace(pod.Namespace, nil).Check(req)
		}
		if sel == "" {
			return policy.Result{Denied: &policy.Error{Namespace: pod.Namespace, Mode: policy.Enforce, Violations: []policy.Violation{{Field: policy.FieldPodIdentities,
				Message: fmt.Sprintf("pod %s/%s uses AAD Pod Identity (usePodIdentity) but carries no %s label, so namespace %q's KeyVaultAccessPolicies cannot allow it",
					pod.Namespace, pod.Name, contract.LabelPodIdentity, pod.Namespace)}}}}
		}
		req.Identity = policy.Identity{PodIdentity: sel}
	}
	return rules.Check(req)
}

func (p *KubePolicies) namespaceLabels(ctx context.Context, ns string) (map[string]string, error) {
	if l, ok := p.namespaces.get(ns, p.now()); ok {
		return l, nil
	}
	var m partialMetadata
	if err := p.kc.getMetadata(ctx, "/api/v1/namespaces/"+url.PathEscape(ns), &m); err != nil {
		return nil, err
	}
	p.namespaces.put(ns, m.Metadata.Labels, p.now())
	return m.Metadata.Labels, nil
}

// podIdentity returns the pod's aadpodidbinding label: what NMI selects its identity by.
func (p *KubePolicies) podIdentity(ctx context.Context, pod PodInfo) (string, error) {
	if l, ok := p.pods.get(pod.UID, p.now()); ok {
		return l[contract.LabelPodIdentity], nil
	}
	var m partialMetadata
	if err := p.kc.getMetadata(ctx, "/api/v1/namespaces/"+url.PathEscape(pod.Namespace)+"/pods/"+url.PathEscape(pod.Name), &m); err != nil {
		return "", err
	}
	if m.Metadata.UID != pod.UID {
		return "", fmt.Errorf("the API server's pod has UID %q, the kubelet's %q: it was replaced", m.Metadata.UID, pod.UID)
	}
	sel := m.Metadata.Labels[contract.LabelPodIdentity]
	p.pods.put(pod.UID, map[string]string{contract.LabelPodIdentity: sel}, p.now())
	return sel, nil
}

type partialMetadata struct {
	Metadata struct {
		UID    string            `json:"uid"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
}

// Run lists the policies, then watches them, until ctx ends: after a broken watch it
// watches again from where it was, and lists again when the API server says that is
// too old. Until the first list succeeds the checker refuses everything, saying why;
// after it, a reconnecting watch serves the last list it saw.
func (p *KubePolicies) Run(ctx context.Context) {
	log := klog.FromContext(ctx).WithName("policies")
	backoff := time.Second
	pause := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
		return true
	}
	var once sync.Once
	for ctx.Err() == nil {
		specs, rv, err := p.list(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if p.current.Load().Err() != nil {
				p.current.Store(policy.Unreadable(describeListError(err)))
			}
			log.Error(err, "Cannot list KeyVaultAccessPolicies; refusing volumes until they can be read", "retryIn", backoff)
			if !pause() {
				return
			}
			continue
		}
		p.publish(specs)
		once.Do(func() { close(p.ready) })
		log.V(2).Info("Listed KeyVaultAccessPolicies", "count", len(specs), "resourceVersion", rv)
		for ctx.Err() == nil {
			next, err := p.watch(ctx, specs, rv)
			if err == nil {
				rv = next
				backoff = time.Second
				continue
			}
			if ctx.Err() != nil {
				return
			}
			var ae *apiError
			if errors.As(err, &ae) && ae.Code == 410 {
				log.V(2).Info("Watch too old; listing again")
				break
			}
			log.Error(err, "KeyVaultAccessPolicy watch broke; watching again", "retryIn", backoff)
			if !pause() {
				return
			}
			rv = next
		}
	}
}

// describeListError says what a failed list means for the admin.
func describeListError(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == 404 {
		return fmt.Errorf("the API server does not serve %s: install the KeyVaultAccessPolicy CRD (the chart installs it; or kubectl apply -f deploy/policy/)", PolicyAPI)
	}
	return err
}

type policyObject struct {
	Metadata struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Spec policy.Spec `json:"spec"`
}

func (p *KubePolicies) list(ctx context.Context) (map[string]policy.Spec, string, error) {
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []policyObject `json:"items"`
	}
	if err := p.kc.do(ctx, "GET", PolicyAPI, nil, &list); err != nil {
		return nil, "", err
	}
	specs := make(map[string]policy.Spec, len(list.Items))
	for _, it := range list.Items {
		specs[it.Metadata.Name] = it.Spec
	}
	return specs, list.Metadata.ResourceVersion, nil
}

// watch applies one watch request's events to specs from resourceVersion rv, and
// returns the last resourceVersion it saw (also with an error, to resume from).
func (p *KubePolicies) watch(ctx context.Context, specs map[string]policy.Spec, rv string) (string, error) {
	path := fmt.Sprintf("%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d", PolicyAPI, url.QueryEscape(rv), int(watchTimeout.Seconds()))
	err := p.kc.stream(ctx, path, func(dec *json.Decoder) error {
		for {
			var ev struct {
				Type   string          `json:"type"`
				Object json.RawMessage `json:"object"`
			}
			if err := dec.Decode(&ev); err != nil {
				return nil // the server ended the watch (timeoutSeconds), or the connection broke
			}
			if ev.Type == "ERROR" {
				var st struct {
					Code            int
					Reason, Message string
				}
				_ = json.Unmarshal(ev.Object, &st)
				return &apiError{Code: st.Code, Reason: st.Reason, Message: st.Message}
			}
			var obj policyObject
			if err := json.Unmarshal(ev.Object, &obj); err != nil {
				return fmt.Errorf("decode %s event: %w", ev.Type, err)
			}
			rv = obj.Metadata.ResourceVersion
			switch ev.Type {
			case "ADDED", "MODIFIED":
				specs[obj.Metadata.Name] = obj.Spec
			case "DELETED":
				delete(specs, obj.Metadata.Name)
			default: // BOOKMARK
				continue
			}
			p.publish(specs)
		}
	})
	return rv, err
}

func (p *KubePolicies) publish(specs map[string]policy.Spec) {
	objects := make([]policy.Object, 0, len(specs))
	for name, spec := range specs {
		objects = append(objects, policy.Object{Name: name, Spec: spec})
	}
	p.current.Store(policy.NewSet(objects))
}

// labelCache keeps labels for PolicyLabelTTL, at most max entries.
type labelCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]labelEntry
}

type labelEntry struct {
	labels map[string]string
	at     time.Time
}

func (c *labelCache) get(key string, now time.Time) (map[string]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || now.Sub(e.at) >= PolicyLabelTTL {
		return nil, false
	}
	return e.labels, true
}

func (c *labelCache) put(key string, labels map[string]string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]labelEntry{}
	}
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if now.Sub(e.at) >= PolicyLabelTTL {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = labelEntry{labels: labels, at: now}
}

// policyRequest is what the volume asks the policies about.
func policyRequest(params Parameters, id identity.Request) (policy.Request, bool) {
	r := policy.Request{Vault: params.Vault, Tenant: params.Identity.TenantID}
	switch id.Mode {
	case identity.ModeServicePrincipal:
		r.ServicePrincipal = true
	case identity.ModeWorkloadIdentity:
		r.Identity = policy.Identity{WorkloadIdentityClientID: id.ClientID}
	case identity.ModePodIdentity:
		return r, true
	}
	return r, false
}
