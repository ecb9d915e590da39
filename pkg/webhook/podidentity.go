package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/mutate"
	"github.com/kvinject/kvinject/pkg/policy"
)

// PodIdentityPath is where PodIdentityHandler is served.
const PodIdentityPath = "/validate-pod-identity"

// PodIdentityHandler checks the AAD Pod Identity label (aadpodidbinding) of every pod
// that carries one, with kvinject or without, against the namespace's
// KeyVaultAccessPolicies: NMI gives a pod the identity its label selects, so a label set
// by hand would otherwise take another team's identity. It answers pod CREATE, and
// UPDATE when the label changes. Safe for concurrent use.
type PodIdentityHandler struct {
	lookup   mutate.Lookup
	policies mutate.PolicySource
	metrics  *Metrics
	events   *policyEvents
	log      logr.Logger
}

// NewPodIdentityHandler returns the handler.
func NewPodIdentityHandler(lookup mutate.Lookup, policies mutate.PolicySource, metrics *Metrics, log logr.Logger) *PodIdentityHandler {
	return &PodIdentityHandler{lookup: lookup, policies: policies, metrics: metrics, log: log}
}

// withEvents makes the handler record what Audit policies report as Events on them.
func (h *PodIdentityHandler) withEvents(e *policyEvents) *PodIdentityHandler {
	h.events = e
	return h
}

var _ admission.Handler = (*PodIdentityHandler)(nil)

// Handle allows a pod whose label the policies allow (or that carries none), denies
// one they refuse with a message naming the label, the namespace, the value and the
// policy field, and allows with a warning what only Audit policies report.
func (h *PodIdentityHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), MaxReviewTime)
	defer cancel()
	resp, outcome := h.handle(ctx, req)
	h.metrics.identityChecks.WithLabelValues(outcome).Inc()
	return resp
}

// Outcomes of the pod identity check.
const (
	OutcomeAllowed = "allowed"
)

func (h *PodIdentityHandler) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return admission.Allowed(""), OutcomeAllowed
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, errors.New("kvinject: the request's object is not a pod")), OutcomeError
	}
	selector, ok := pod.Labels[contract.LabelPodIdentity]
	if !ok {
		return admission.Allowed(""), OutcomeAllowed
	}
	if req.Operation == admissionv1.Update {
		var old corev1.Pod
		if err := json.Unmarshal(req.OldObject.Raw, &old); err == nil {
			if was, had := old.Labels[contract.LabelPodIdentity]; had && was == selector {
				return admission.Allowed(""), OutcomeAllowed
			}
		}
	}
	set := h.policies.Policies()
	if set.Empty() {
		return admission.Allowed(""), OutcomeAllowed
	}
	ns, err := h.lookup.Namespace(ctx, req.Namespace)
	if err != nil {
		h.log.Error(err, "Cannot read namespace", "namespace", req.Namespace)
		return admission.Errored(http.StatusInternalServerError, err), OutcomeError
	}
	ref := klog.KRef(req.Namespace, podName(&pod, req.Name))
	res := set.Namespace(req.Namespace, ns.Labels).Check(policy.Request{Identity: policy.Identity{PodIdentity: selector}})
	if res.Denied != nil {
		h.metrics.observePolicy(ActionDenied, res.Denied)
		msg := "metadata.labels." + contract.LabelPodIdentity + ": " + res.Denied.Error()
		h.log.V(1).Info("Denied pod identity label", "pod", ref, "reason", msg)
		return admission.Denied(msg), OutcomeDenied
	}
	if res.Audited != nil {
		h.metrics.observePolicy(ActionAudited, res.Audited)
		if req.DryRun == nil || !*req.DryRun {
			h.events.audited(ctx, "pod "+ref.String(), res.Audited)
		}
		return admission.Allowed("").WithWarnings("metadata.labels." + contract.LabelPodIdentity + ": " + res.Audited.Error()), OutcomeAllowed
	}
	return admission.Allowed(""), OutcomeAllowed
}
