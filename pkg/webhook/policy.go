package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
	"github.com/kvinject/kvinject/pkg/mutate"
	"github.com/kvinject/kvinject/pkg/policy"
)

// errNotSynced is why policies cannot be read before the informer's first list.
var errNotSynced = errors.New("the webhook has not finished its first read of them")

// policyCache serves the cluster's KeyVaultAccessPolicies from the manager's informer
// as a policy.Set, compiled again whenever one changes (an event is a few
// microseconds of work for tens of policies; reviews never compile). Until the first
// list it answers policy.Unreadable, which refuses every pod. Safe for concurrent use.
type policyCache struct {
	reader  client.Reader
	log     logr.Logger
	current atomic.Pointer[policy.Set]
	synced  atomic.Bool
}

var _ mutate.PolicySource = (*policyCache)(nil)

func newPolicyCache(reader client.Reader, log logr.Logger) *policyCache {
	p := &policyCache{reader: reader, log: log}
	p.current.Store(policy.Unreadable(errNotSynced))
	return p
}

// Policies implements mutate.PolicySource.
func (p *policyCache) Policies() *policy.Set { return p.current.Load() }

// watch registers with the manager's cache. It fails when the API server does not
// serve KeyVaultAccessPolicy: the webhook then does not start (and the API server,
// with failurePolicy Fail, refuses the pods it would have reviewed).
func (p *policyCache) watch(ctx context.Context, c ctrlcache.Cache) error {
	inf, err := c.GetInformer(ctx, &v1alpha1.KeyVaultAccessPolicy{}, ctrlcache.BlockUntilSynced(false))
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("the API server does not serve %s.%s/%s: install the KeyVaultAccessPolicy CRD (the chart installs it; or kubectl apply -f deploy/policy/): %w",
			v1alpha1.Resource, v1alpha1.GroupVersion.Group, v1alpha1.GroupVersion.Version, err)
	}
	if err != nil {
		return fmt.Errorf("watch KeyVaultAccessPolicies: %w", err)
	}
	rebuild := func(any) { p.rebuild(ctx) }
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    rebuild,
		UpdateFunc: func(_, o any) { rebuild(o) },
		DeleteFunc: rebuild,
	})
	return err
}

// markSynced is called once the manager's caches have synced.
func (p *policyCache) markSynced(ctx context.Context) {
	p.synced.Store(true)
	p.rebuild(ctx)
}

// rebuild compiles the policies the cache holds.
func (p *policyCache) rebuild(ctx context.Context) {
	if !p.synced.Load() {
		return
	}
	var list v1alpha1.KeyVaultAccessPolicyList
	if err := p.reader.List(ctx, &list); err != nil {
		p.log.Error(err, "Cannot list KeyVaultAccessPolicies from the cache")
		p.current.Store(policy.Unreadable(err))
		return
	}
	objects := make([]policy.Object, len(list.Items))
	for i, item := range list.Items {
		objects[i] = policy.Object{Name: item.Name, Spec: item.Spec}
	}
	p.current.Store(policy.NewSet(objects))
	p.log.V(1).Info("KeyVaultAccessPolicies changed", "count", len(objects))
}

// policyEvents records what Audit policies report as a Warning Event on each policy
// (events.k8s.io; the recorder merges repeats into a series).
type policyEvents struct {
	reader   client.Reader
	recorder events.EventRecorder
	log      logr.Logger
}

// ReasonPolicyAudit is the reason of the Event on an Audit policy that would refuse a
// pod or mount.
const ReasonPolicyAudit = "PolicyAudit"

func (e *policyEvents) audited(ctx context.Context, subject string, report *policy.Error) {
	if e == nil {
		return
	}
	for _, name := range report.Policies {
		var p v1alpha1.KeyVaultAccessPolicy
		if err := e.reader.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
			e.log.V(1).Info("Cannot read the policy to record its audit event", "policy", name, "err", err.Error())
			continue
		}
		e.recorder.Eventf(&p, nil, "Warning", ReasonPolicyAudit, "Admit", "%s", truncateNote(subject+": "+report.Error()))
	}
}

// maxNote is the longest note an events.k8s.io Event may carry.
const maxNote = 1024

func truncateNote(s string) string {
	if len(s) <= maxNote {
		return s
	}
	return s[:maxNote-3] + "..."
}
