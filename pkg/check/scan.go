package check

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// ClassResource is the SecretProviderClass resource.
var ClassResource = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasses"}

// Scan judges every SecretProviderClass with provider azure and every workload with a
// Secrets Store volume in namespace ("" for all), sorted by namespace, kind and name.
// Pods, ReplicaSets and Jobs that a controller owns are judged through their owner.
func Scan(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, namespace string) ([]Finding, error) {
	var out []Finding
	classes := map[string]map[string]Finding{} // namespace -> name -> finding
	list, err := dyn.Resource(ClassResource).Namespace(namespace).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// No SecretProviderClass CRD: no class to judge.
	case err != nil:
		return nil, fmt.Errorf("list SecretProviderClasses: %w", err)
	default:
		for _, item := range list.Items {
			raw, _ := json.Marshal(item.Object["spec"])
			var spec map[string]json.RawMessage
			_ = json.Unmarshal(raw, &spec)
			f, ok := Class(item.GetNamespace(), item.GetName(), spec)
			if !ok {
				continue
			}
			if classes[f.Namespace] == nil {
				classes[f.Namespace] = map[string]Finding{}
			}
			classes[f.Namespace][f.Name] = f
			out = append(out, f)
		}
	}
	add := func(kind string, meta metav1.ObjectMeta, spec corev1.PodSpec) {
		if len(meta.OwnerReferences) > 0 {
			return
		}
		if f, ok := Workload(kind, meta.Namespace, meta.Name, spec, classes[meta.Namespace]); ok {
			out = append(out, f)
		}
	}
	opts := metav1.ListOptions{}
	deps, err := kube.AppsV1().Deployments(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list Deployments: %w", err)
	}
	for _, o := range deps.Items {
		add("Deployment", o.ObjectMeta, o.Spec.Template.Spec)
	}
	sts, err := kube.AppsV1().StatefulSets(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list StatefulSets: %w", err)
	}
	for _, o := range sts.Items {
		add("StatefulSet", o.ObjectMeta, o.Spec.Template.Spec)
	}
	dss, err := kube.AppsV1().DaemonSets(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list DaemonSets: %w", err)
	}
	for _, o := range dss.Items {
		add("DaemonSet", o.ObjectMeta, o.Spec.Template.Spec)
	}
	rss, err := kube.AppsV1().ReplicaSets(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list ReplicaSets: %w", err)
	}
	for _, o := range rss.Items {
		add("ReplicaSet", o.ObjectMeta, o.Spec.Template.Spec)
	}
	jobs, err := kube.BatchV1().Jobs(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list Jobs: %w", err)
	}
	for _, o := range jobs.Items {
		add("Job", o.ObjectMeta, o.Spec.Template.Spec)
	}
	cjs, err := kube.BatchV1().CronJobs(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list CronJobs: %w", err)
	}
	for _, o := range cjs.Items {
		add("CronJob", o.ObjectMeta, o.Spec.JobTemplate.Spec.Template.Spec)
	}
	pods, err := kube.CoreV1().Pods(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list Pods: %w", err)
	}
	for _, o := range pods.Items {
		add("Pod", o.ObjectMeta, o.Spec)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	return out, nil
}
