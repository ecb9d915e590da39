package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kvinject/kvinject/pkg/mutate"
)

// Path is where the handler is served.
const Path = "/mutate-pod"

// MaxReviewTime bounds one review: the API server waits at most 30 s for a webhook
// (timeoutSeconds), so no answer is useful after that.
const MaxReviewTime = 30 * time.Second

// Handler is the admission handler for pod CREATE. It is safe for concurrent use.
type Handler struct {
	mutator *mutate.Mutator
	metrics *Metrics
	events  *policyEvents
	log     logr.Logger
}

// NewHandler returns a handler that mutates pods with mutator and records every review
// in metrics.
func NewHandler(mutator *mutate.Mutator, metrics *Metrics, log logr.Logger) *Handler {
	return &Handler{mutator: mutator, metrics: metrics, log: log}
}

// withEvents makes the handler record what Audit policies report as Events on them.
func (h *Handler) withEvents(e *policyEvents) *Handler {
	h.events = e
	return h
}

var _ admission.Handler = (*Handler)(nil)

// Handle decodes the pod, mutates it and answers with the patch, a denial naming the
// annotation and rule, or an error. Dry-run requests get exactly the same answer: the
// handler has no side effects.
//
// A review in flight when shutdown begins still finishes: controller-runtime's server
// cancels every request's context at that moment, which would fail the pod's creation
// (failurePolicy Fail) for want of a namespace read, so the review runs on a context of
// its own, bounded by MaxReviewTime.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), MaxReviewTime)
	defer cancel()
	start := time.Now()
	resp, outcome := h.handle(ctx, req)
	h.metrics.observe(outcome, time.Since(start))
	return resp
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return admission.Allowed("kvinject mutates pod creations only"), OutcomeUnchanged
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		h.log.Error(err, "Cannot decode pod", "uid", req.UID)
		return admission.Errored(http.StatusBadRequest, errors.New("kvinject: the request's object is not a pod")), OutcomeError
	}
	ref := klog.KRef(req.Namespace, podName(&pod, req.Name))
	res, err := h.mutator.Mutate(ctx, &pod, req.Namespace)
	if err != nil {
		var denial *mutate.Denial
		if errors.As(err, &denial) {
			if denial.Policy != nil {
				h.metrics.observePolicy(ActionDenied, denial.Policy)
			}
			h.log.V(1).Info("Denied pod", "pod", ref, "reason", denial.Error())
			return admission.Denied(denial.Error()), OutcomeDenied
		}
		h.log.Error(err, "Cannot mutate pod", "pod", ref)
		return admission.Errored(http.StatusInternalServerError, err), OutcomeError
	}
	if res.Audit != nil {
		h.metrics.observePolicy(ActionAudited, res.Audit)
		if req.DryRun == nil || !*req.DryRun {
			h.events.audited(ctx, "pod "+ref.String(), res.Audit)
		}
	}
	if res.Outcome == mutate.Unchanged {
		return admission.Allowed("").WithWarnings(res.Warnings...), OutcomeUnchanged
	}
	h.log.V(2).Info("Injected pod", "pod", ref, "dryRun", req.DryRun != nil && *req.DryRun, "operations", len(res.Patch))
	return admission.Patched("", res.Patch...).WithWarnings(res.Warnings...), OutcomeInjected
}

// podName names a pod for logs: its name, else the request's, else its generateName.
func podName(pod *corev1.Pod, reqName string) string {
	switch {
	case pod.Name != "":
		return pod.Name
	case reqName != "":
		return reqName
	default:
		return pod.GenerateName
	}
}
