package webhook

import (
	"context"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
)

// statusReconciler writes every KeyVaultAccessPolicy's Valid condition. Every webhook
// replica runs it: the condition depends on the spec alone, so replicas agree, and a
// write that loses a conflict is retried against the newer object.
type statusReconciler struct {
	client client.Client
}

func addStatusController(mgr manager.Manager) error {
	skip := true // several managers in one test process
	return builder.ControllerManagedBy(mgr).
		For(&v1alpha1.KeyVaultAccessPolicy{}).
		Named("keyvaultaccesspolicy-status").
		WithOptions(controller.Options{SkipNameValidation: &skip}).
		Complete(&statusReconciler{client: mgr.GetClient()})
}

// Reconcile sets the Valid condition from the spec.
func (r *statusReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var p v1alpha1.KeyVaultAccessPolicy
	if err := r.client.Get(ctx, req.NamespacedName, &p); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	cond := validCondition(&p)
	if !meta.SetStatusCondition(&p.Status.Conditions, cond) {
		return reconcile.Result{}, nil
	}
	if err := r.client.Status().Update(ctx, &p); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

// validCondition is the Valid condition of p's spec.
func validCondition(p *v1alpha1.KeyVaultAccessPolicy) metav1.Condition {
	if err := p.Spec.Validate(); err != nil {
		return metav1.Condition{Type: v1alpha1.ConditionValid, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonInvalid, ObservedGeneration: p.Generation,
			Message: strings.ReplaceAll(err.Error(), "\n", "; ") + ". Until it is fixed, kvinject refuses every pod and mount in the namespaces the policy selects (every namespace, if the selector is what is invalid)."}
	}
	return metav1.Condition{Type: v1alpha1.ConditionValid, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonValid, ObservedGeneration: p.Generation,
		Message: "The policy is valid and in force."}
}
