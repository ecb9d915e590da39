package integration

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/render"
	"github.com/kvinject/kvinject/pkg/webhook"
)

// TestRenderEqualsTheWebhook: for every workload kind, kubectl kvinject render's pod
// template is what the API server stores through the webhook. Each kind's template
// becomes a pod twice, with server-side dry runs: the original (the webhook mutates
// it) and the rendered one (already injected, the webhook leaves it). The two stored
// pods must be equal. A template the webhook denies gives render the same message.
func TestRenderEqualsTheWebhook(t *testing.T) {
	startWebhook(t)
	ns := namespace(t, "render", map[string]string{contract.AnnotationVault: "render-kv", contract.AnnotationTenantID: tenant})
	var nsObj corev1.Namespace
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Name: ns}, &nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.APIVersion, nsObj.Kind = "v1", "Namespace"
	cfg := webhook.NewOptions().Cluster
	cfg.TenantID = tenant

	annotations := map[string]string{
		contract.AnnotationSecrets:  "DatabaseLogin=DATABASE_LOGIN, secret:DatabasePassword=password;mode=0400",
		contract.AnnotationIdentity: "azure-kv",
	}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}, Annotations: annotations},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyAlways, Containers: []corev1.Container{
			{Name: "app", Image: "nginx"}, {Name: "sidecar", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}}},
			Volumes: []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}},
	}
	jobTmpl := *tmpl.DeepCopy()
	jobTmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
	meta := func(kind, apiVersion string) (metav1.TypeMeta, metav1.ObjectMeta) {
		return metav1.TypeMeta{Kind: kind, APIVersion: apiVersion}, metav1.ObjectMeta{Name: strings.ToLower(kind), Namespace: ns}
	}
	type workload struct {
		obj      any
		template func(doc []byte) corev1.PodTemplateSpec
	}
	decode := func(doc []byte, into any) {
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("rendered document: %v\n%s", err, doc)
		}
	}
	pt, pm := meta("Pod", "v1")
	dt, dm := meta("Deployment", "apps/v1")
	st, sm := meta("StatefulSet", "apps/v1")
	dst, dsm := meta("DaemonSet", "apps/v1")
	rt, rm := meta("ReplicaSet", "apps/v1")
	rct, rcm := meta("ReplicationController", "v1")
	jt, jm := meta("Job", "batch/v1")
	ct, cm := meta("CronJob", "batch/v1")
	workloads := map[string]workload{
		"Pod": {&corev1.Pod{TypeMeta: pt, ObjectMeta: func() metav1.ObjectMeta { m := pm; m.Labels, m.Annotations = tmpl.Labels, tmpl.Annotations; return m }(), Spec: tmpl.Spec},
			func(doc []byte) corev1.PodTemplateSpec {
				var p corev1.Pod
				decode(doc, &p)
				return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: p.Labels, Annotations: p.Annotations}, Spec: p.Spec}
			}},
		"Deployment": {&appsv1.Deployment{TypeMeta: dt, ObjectMeta: dm, Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}},
			func(doc []byte) corev1.PodTemplateSpec {
				var o appsv1.Deployment
				decode(doc, &o)
				return o.Spec.Template
			}},
		"StatefulSet": {&appsv1.StatefulSet{TypeMeta: st, ObjectMeta: sm, Spec: appsv1.StatefulSetSpec{Selector: sel, Template: tmpl}},
			func(doc []byte) corev1.PodTemplateSpec {
				var o appsv1.StatefulSet
				decode(doc, &o)
				return o.Spec.Template
			}},
		"DaemonSet": {&appsv1.DaemonSet{TypeMeta: dst, ObjectMeta: dsm, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}},
			func(doc []byte) corev1.PodTemplateSpec {
				var o appsv1.DaemonSet
				decode(doc, &o)
				return o.Spec.Template
			}},
		"ReplicaSet": {&appsv1.ReplicaSet{TypeMeta: rt, ObjectMeta: rm, Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl}},
			func(doc []byte) corev1.PodTemplateSpec {
				var o appsv1.ReplicaSet
				decode(doc, &o)
				return o.Spec.Template
			}},
		"ReplicationController": {&corev1.ReplicationController{TypeMeta: rct, ObjectMeta: rcm, Spec: corev1.ReplicationControllerSpec{Selector: map[string]string{"app": "x"}, Template: &tmpl}},
			func(doc []byte) corev1.PodTemplateSpec {
				var o corev1.ReplicationController
				decode(doc, &o)
				return *o.Spec.Template
			}},
		"Job": {&batchv1.Job{TypeMeta: jt, ObjectMeta: jm, Spec: batchv1.JobSpec{Template: jobTmpl}},
			func(doc []byte) corev1.PodTemplateSpec { var o batchv1.Job; decode(doc, &o); return o.Spec.Template }},
		"CronJob": {&batchv1.CronJob{TypeMeta: ct, ObjectMeta: cm, Spec: batchv1.CronJobSpec{Schedule: "0 1 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: jobTmpl}}}},
			func(doc []byte) corev1.PodTemplateSpec {
				var o batchv1.CronJob
				decode(doc, &o)
				return o.Spec.JobTemplate.Spec.Template
			}},
	}
	// One multi-document input, as kubectl apply -f would take it, plus the Namespace.
	var docs []render.Document
	kinds := []string{"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob"}
	for _, k := range kinds {
		b, err := yaml.Marshal(workloads[k].obj)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, render.Document{Source: k, Data: b})
	}
	nsDoc, _ := yaml.Marshal(&nsObj)
	results, err := render.Render(t.Context(), docs, render.Options{Config: cfg, Cluster: []render.Document{{Source: "namespace", Data: nsDoc}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range kinds {
		t.Run(k, func(t *testing.T) {
			r := results[i]
			if r.Err != nil || !r.Injected {
				t.Fatalf("render: injected %v, %v", r.Injected, r.Err)
			}
			original := podFrom(ns, "original", tmpl)
			if k == "Job" || k == "CronJob" {
				original = podFrom(ns, "original", jobTmpl)
			}
			stored := dryRunCreate(t, original)
			if stored.Annotations[contract.AnnotationStatus] != contract.StatusInjected {
				t.Fatalf("the webhook did not inject the original: %v", stored.Annotations)
			}
			rendered := dryRunCreate(t, podFrom(ns, "original", workloads[k].template(r.Data)))
			if diff := cmp.Diff(comparable(stored), comparable(rendered)); diff != "" {
				t.Errorf("render's %s differs from what the API server stores through the webhook (-webhook +render):\n%s", k, diff)
			}
		})
	}

	t.Run("a denial has the webhook's words", func(t *testing.T) {
		bad := tmpl.DeepCopy()
		bad.Annotations = map[string]string{contract.AnnotationSecrets: "a=../x", contract.AnnotationIdentity: "azure-kv"}
		d := &appsv1.Deployment{TypeMeta: dt, ObjectMeta: dm, Spec: appsv1.DeploymentSpec{Selector: sel, Template: *bad}}
		b, _ := yaml.Marshal(d)
		res, err := render.Render(t.Context(), []render.Document{{Source: "bad", Data: b}}, render.Options{Config: cfg, Cluster: []render.Document{{Source: "namespace", Data: nsDoc}}})
		if err != nil {
			t.Fatal(err)
		}
		apiErr := createError(t, cp.Client, podFrom(ns, "bad", *bad))
		if res[0].Err == nil || !strings.HasSuffix(apiErr, res[0].Err.Error()) {
			t.Fatalf("render: %v\nAPI server: %s", res[0].Err, apiErr)
		}
	})
}

func podFrom(ns, name string, tmpl corev1.PodTemplateSpec) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: tmpl.Labels, Annotations: tmpl.Annotations}, Spec: tmpl.Spec}
}

func dryRunCreate(t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := cp.Client.Create(t.Context(), p, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	return p
}

// comparable is what render decides of a stored pod: labels, annotations and spec.
func comparable(p *corev1.Pod) map[string]any {
	spec, _ := json.Marshal(p.Spec)
	var s map[string]any
	_ = json.Unmarshal(spec, &s)
	return map[string]any{"labels": p.Labels, "annotations": p.Annotations, "spec": s}
}
