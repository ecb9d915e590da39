// Package migrate rewrites workloads that mount a SecretProviderClass through the
// Secrets Store CSI driver into kvinject's annotations, only where the node plugin would
// then write the same files: same names, contents, modes and identity. It proves that
// for each workload before it rewrites it: the class is parsed by the node plugin's own
// parser (pkg/csi), the rewritten workload is mutated by the webhook's own code
// (pkg/render), and the volume the webhook would write is parsed again and compared.
// Anything that would differ leaves the workload as it was, with the reasons. kubectl
// kvinject migrate is its command.
package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/check"
	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/pkg/keyvault"
	"github.com/kvinject/kvinject/pkg/render"
)

// Outcome is what migrate did with one workload that mounts a Secrets Store volume.
type Outcome struct {
	Source    string `json:"source"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Migrated is true when the workload was rewritten.
	Migrated bool `json:"migrated"`
	// Reasons say why a workload was left as it was.
	Reasons []string `json:"reasons,omitempty"`
	// Notes are what the rewrite dropped that cannot change the files, and the
	// webhook's warnings for the rewritten workload.
	Notes []string `json:"notes,omitempty"`
}

// Migrate returns docs with every workload that can move rewritten, the others as they
// were (byte for byte), and one Outcome per workload that mounts a Secrets Store volume.
// SecretProviderClasses come from docs and o.Cluster; o is what kubectl kvinject render
// takes (the cluster configuration, Namespaces, ServiceAccounts and policies), with
// which the rewritten workloads are checked against the webhook.
func Migrate(ctx context.Context, docs []render.Document, o render.Options) ([]render.Document, []Outcome, error) {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if err := o.Config.Validate(); err != nil {
		return nil, nil, err
	}
	classes := classesOf(append(append([]render.Document(nil), o.Cluster...), docs...), o.Namespace)
	// The rewritten workloads are rendered with the input's other documents standing for
	// the cluster (Namespaces, ServiceAccounts, policies), as render does.
	o.Cluster = append(append([]render.Document(nil), o.Cluster...), docs...)
	out := make([]render.Document, 0, len(docs))
	var outcomes []Outcome
	for _, d := range docs {
		h, js, err := d.ReadHead()
		if err != nil {
			out = append(out, d)
			continue
		}
		if h.Kind == "List" {
			// A List is printed as given; its workloads of the Secrets Store driver are
			// named, not rewritten.
			out = append(out, d)
			for _, w := range listItems(d, h, o.Namespace) {
				outcomes = append(outcomes, Outcome{Source: d.Source, Kind: w.kind, Namespace: w.namespace, Name: w.name,
					Reasons: []string{"it is an item of a List, and migrate rewrites whole documents: give it as a document of its own"}})
			}
			continue
		}
		w, err := workloadOf(d, h, js, o.Namespace)
		if err != nil || w == nil || len(w.secretsStore()) == 0 {
			out = append(out, d) // not a workload, or none of ours: as given
			continue
		}
		oc := Outcome{Source: d.Source, Kind: w.kind, Namespace: w.namespace, Name: w.name}
		rewritten, reasons, notes := w.migrate(ctx, classes[w.namespace], o)
		oc.Reasons, oc.Notes = reasons, notes
		if len(reasons) == 0 {
			oc.Migrated = true
			out = append(out, rewritten)
		} else {
			out = append(out, d)
		}
		outcomes = append(outcomes, oc)
	}
	return out, outcomes, nil
}

// listItems returns the workloads with a Secrets Store volume among the items of the
// List d, whose head is h.
func listItems(d render.Document, h render.Head, defaultNS string) []*workload {
	var out []*workload
	for i, item := range h.Items {
		w, err := parse(render.Document{Source: fmt.Sprintf("%s items[%d]", d.Source, i), Data: item}, defaultNS)
		if err == nil && w != nil && len(w.secretsStore()) > 0 {
			out = append(out, w)
		}
	}
	return out
}

// class is a SecretProviderClass of the input.
type class struct {
	spec map[string]json.RawMessage
}

func classesOf(docs []render.Document, defaultNS string) map[string]map[string]class {
	out := map[string]map[string]class{}
	for _, d := range docs {
		h, js, err := d.ReadHead()
		if err != nil || h.Kind != "SecretProviderClass" || !strings.HasPrefix(h.APIVersion, check.ClassResource.Group+"/") {
			continue
		}
		var obj struct {
			Spec map[string]json.RawMessage `json:"spec"`
		}
		if json.Unmarshal(js, &obj) != nil {
			continue
		}
		ns := h.Metadata.Namespace
		if ns == "" {
			ns = defaultNS
		}
		if out[ns] == nil {
			out[ns] = map[string]class{}
		}
		out[ns][h.Metadata.Name] = class{spec: obj.Spec}
	}
	return out
}

// workload is a document with a pod template.
type workload struct {
	doc                   render.Document
	kind, namespace, name string
	obj                   map[string]any // the whole document
	tmplPath              string         // JSON pointer of the template ("" for a Pod)
	tmpl                  corev1.PodTemplateSpec
}

// parse returns the workload in d, nil if d holds no pod template.
func parse(d render.Document, defaultNS string) (*workload, error) {
	h, js, err := d.ReadHead()
	if err != nil {
		return nil, err
	}
	return workloadOf(d, h, js, defaultNS)
}

// workloadOf is parse for a document already read: its head h and its JSON js.
func workloadOf(d render.Document, h render.Head, js []byte, defaultNS string) (*workload, error) {
	p, ok := render.TemplatePath(h.APIVersion, h.Kind)
	if !ok {
		return nil, nil
	}
	w := &workload{doc: d, kind: h.Kind, namespace: h.Metadata.Namespace, name: h.Metadata.Name, tmplPath: p}
	if w.namespace == "" {
		w.namespace = defaultNS
	}
	if err := json.Unmarshal(js, &w.obj); err != nil {
		return nil, err
	}
	t, err := w.template()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &w.tmpl); err != nil {
		return nil, err
	}
	return w, nil
}

// template returns the template's object inside w.obj, to be changed in place.
func (w *workload) template() (map[string]any, error) {
	m := w.obj
	for _, key := range strings.Split(strings.TrimPrefix(w.tmplPath, "/"), "/") {
		if w.tmplPath == "" {
			break
		}
		next, ok := m[key].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s is missing", strings.ReplaceAll(strings.TrimPrefix(w.tmplPath, "/"), "/", "."))
		}
		m = next
	}
	return m, nil
}

// secretsStore returns the template's Secrets Store CSI volumes.
func (w *workload) secretsStore() []corev1.Volume {
	var out []corev1.Volume
	for _, v := range w.tmpl.Spec.Volumes {
		if v.CSI != nil && v.CSI.Driver == contract.SecretsStoreDriverName {
			out = append(out, v)
		}
	}
	return out
}

// migrate returns the rewritten document, or the reasons it cannot be (the document is
// then not used); notes either way.
func (w *workload) migrate(ctx context.Context, classes map[string]class, o render.Options) (render.Document, []string, []string) {
	vols := w.secretsStore()
	if len(vols) > 1 {
		var names []string
		for _, v := range vols {
			names = append(names, v.Name)
		}
		return render.Document{}, []string{fmt.Sprintf("the pod template has %d Secrets Store volumes (%s) and kvinject gives a pod one: merge their SecretProviderClasses into one first, or keep this workload on the Secrets Store CSI driver", len(vols), strings.Join(names, ", "))}, nil
	}
	vol := vols[0]
	if _, ok := w.tmpl.Annotations[contract.AnnotationSecrets]; ok {
		return render.Document{}, []string{fmt.Sprintf("the pod template already has %s: remove the Secrets Store volume %s by hand, or that annotation", contract.AnnotationSecrets, vol.Name)}, nil
	}

	// What check says, with the node plugin's own checks of the class.
	findings := map[string]check.Finding{}
	for name, c := range classes {
		if f, ok := check.Class(w.namespace, name, c.spec); ok {
			findings[name] = f
		}
	}
	finding, _ := check.Workload(w.kind, w.namespace, w.name, w.tmpl.Spec, findings)
	if finding.Verdict == check.Cannot {
		return render.Document{}, finding.Problems, nil
	}
	notes := append([]string(nil), finding.Changes...)
	className := vol.CSI.VolumeAttributes[contract.AttrSecretProviderClass]
	params, err := csi.CheckClass(w.namespace+"/"+className, classes[className].spec)
	if err != nil {
		return render.Document{}, []string{err.Error()}, notes
	}
	before, err := csi.ParseParameters(params, o.Config.MaxEntries)
	if err != nil {
		return render.Document{}, []string{err.Error()}, notes
	}

	var reasons []string
	mounting, mountPath, why := mountsOf(w.tmpl.Spec, vol.Name)
	reasons = append(reasons, why...)
	annotations := map[string]string{contract.AnnotationVault: before.Vault}
	if t := strings.TrimSpace(before.Identity.TenantID); t != "" {
		annotations[contract.AnnotationTenantID] = t
	}
	podIdentity, err := before.Identity.PodIdentity()
	switch {
	case err != nil:
		reasons = append(reasons, err.Error())
	case podIdentity:
		label := w.tmpl.Labels[contract.LabelPodIdentity]
		if label == "" {
			reasons = append(reasons, fmt.Sprintf("SecretProviderClass %s sets usePodIdentity, but the pod template has no %s label, so the volume has no identity today: add the label first", className, contract.LabelPodIdentity))
		}
		annotations[contract.AnnotationIdentity] = label
	case strings.TrimSpace(before.Identity.ClientID) != "":
		annotations[contract.AnnotationClientID] = strings.TrimSpace(before.Identity.ClientID)
	default:
		ref := "no nodePublishSecretRef"
		if vol.CSI.NodePublishSecretRef != nil {
			ref = "nodePublishSecretRef " + vol.CSI.NodePublishSecretRef.Name
		}
		reasons = append(reasons, fmt.Sprintf("SecretProviderClass %s sets neither usePodIdentity nor clientID, so the volume authenticates as a service principal (%s), which kvinject's annotations cannot name: keep the SecretProviderClass volume and change only its driver to kvinject's", className, ref))
	}
	list, err := contract.FormatAliasList(before.Objects)
	if err != nil {
		reasons = append(reasons, fmt.Sprintf("SecretProviderClass %s: %v", className, err))
	}
	annotations[contract.AnnotationSecrets] = list
	// Explicit, like the vault and the tenant: the workload's files must not move when
	// the cluster's default mount path changes.
	annotations[contract.AnnotationMountPath] = mountPath
	if len(mounting) < len(containerNames(w.tmpl.Spec)) {
		annotations[contract.AnnotationContainers] = strings.Join(mounting, ",")
	}
	if len(reasons) > 0 {
		return render.Document{}, reasons, notes
	}

	rewritten, err := w.rewrite(vol.Name, annotations)
	if err != nil {
		return render.Document{}, []string{err.Error()}, notes
	}
	// The proof: the webhook's own mutation of the rewritten workload, parsed by the
	// node plugin's own parser, reads the same objects with the same identity and
	// writes the same files in the same containers.
	results, err := render.Render(ctx, []render.Document{rewritten}, o)
	if err != nil {
		return render.Document{}, []string{err.Error()}, notes
	}
	r := results[0]
	notes = append(notes, r.Warnings...)
	if r.Err != nil {
		return render.Document{}, []string{fmt.Sprintf("kvinject's webhook would refuse the rewritten workload: %v", r.Err)}, notes
	}
	mutated, err := parse(render.Document{Source: r.Source, Data: r.Data}, w.namespace)
	if err != nil {
		return render.Document{}, []string{err.Error()}, notes
	}
	if diffs := compare(w, mutated, before, mounting, mountPath, podIdentity, o.Config.MaxEntries); len(diffs) > 0 {
		return render.Document{}, diffs, notes
	}
	return rewritten, nil, notes
}

// mountsOf returns the containers that mount volume and its one path, or why their
// mounts cannot become kvinject's.
func mountsOf(spec corev1.PodSpec, volume string) (containers []string, mountPath string, reasons []string) {
	paths := map[string]bool{}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			for _, vm := range c.VolumeMounts {
				if vm.Name != volume {
					continue
				}
				if vm.SubPath != "" || vm.SubPathExpr != "" {
					reasons = append(reasons, fmt.Sprintf("container %q mounts part of volume %s (subPath), and kvinject mounts the whole volume: mount it whole first", c.Name, volume))
				}
				containers = append(containers, c.Name)
				paths[path.Clean(vm.MountPath)] = true
			}
		}
	}
	switch len(paths) {
	case 0:
		reasons = append(reasons, fmt.Sprintf("no container mounts volume %s: remove it instead", volume))
	case 1:
		for p := range paths {
			mountPath = p
		}
	default:
		var ps []string
		for p := range paths {
			ps = append(ps, p)
		}
		sort.Strings(ps)
		reasons = append(reasons, fmt.Sprintf("the containers mount volume %s at %d paths (%s) and kvinject mounts at one: use one path first", volume, len(ps), strings.Join(ps, ", ")))
	}
	return containers, mountPath, reasons
}

func containerNames(spec corev1.PodSpec) []string {
	var out []string
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			out = append(out, c.Name)
		}
	}
	return out
}

// rewrite returns the document with the annotations added to the pod template and the
// volume and its mounts removed; everything else is kept as it was.
func (w *workload) rewrite(volume string, annotations map[string]string) (render.Document, error) {
	// A copy: w.obj stays the document as given.
	b, err := json.Marshal(w.obj)
	if err != nil {
		return render.Document{}, err
	}
	c := &workload{tmplPath: w.tmplPath}
	if err := json.Unmarshal(b, &c.obj); err != nil {
		return render.Document{}, err
	}
	t, err := c.template()
	if err != nil {
		return render.Document{}, err
	}
	meta, _ := t["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		t["metadata"] = meta
	}
	ann, _ := meta["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	for k, v := range annotations {
		ann[k] = v
	}
	spec, _ := t["spec"].(map[string]any)
	spec["volumes"] = without(spec["volumes"], volume)
	if vs, _ := spec["volumes"].([]any); len(vs) == 0 {
		delete(spec, "volumes")
	}
	for _, field := range []string{"initContainers", "containers"} {
		cs, _ := spec[field].([]any)
		for _, c := range cs {
			cm, _ := c.(map[string]any)
			if cm == nil {
				continue
			}
			cm["volumeMounts"] = without(cm["volumeMounts"], volume)
			if vms, _ := cm["volumeMounts"].([]any); len(vms) == 0 {
				delete(cm, "volumeMounts")
			}
		}
	}
	out, err := yaml.Marshal(c.obj)
	if err != nil {
		return render.Document{}, err
	}
	return render.Document{Source: w.doc.Source, Data: out}, nil
}

// without returns list (a JSON array of objects) without the entries named name.
func without(list any, name string) any {
	items, ok := list.([]any)
	if !ok {
		return list
	}
	out := make([]any, 0, len(items))
	for _, it := range items {
		if m, ok := it.(map[string]any); ok && m["name"] == name {
			continue
		}
		out = append(out, it)
	}
	return out
}

// compare says how the files of the webhook's volume in mutated would differ from the
// Secrets Store volume's in w, nothing when they would not.
func compare(w, mutated *workload, before csi.Parameters, mounting []string, mountPath string, podIdentity bool, maxObjects int) []string {
	var vol *corev1.Volume
	for i := range mutated.tmpl.Spec.Volumes {
		if v := &mutated.tmpl.Spec.Volumes[i]; v.Name == contract.VolumeName && v.CSI != nil {
			vol = v
		}
	}
	if vol == nil {
		return []string{"kvinject's webhook did not inject the rewritten workload"}
	}
	after, err := csi.ParseParameters(vol.CSI.VolumeAttributes, maxObjects)
	if err != nil {
		return []string{fmt.Sprintf("the node plugin would refuse the volume kvinject's webhook writes: %v", err)}
	}
	var diffs []string
	differs := func(what, was, is string) {
		diffs = append(diffs, fmt.Sprintf("the files would differ: %s %q would become %q", what, was, is))
	}
	if before.Vault != after.Vault {
		differs("keyvaultName", before.Vault, after.Vault)
	}
	if before.Cloud.Name != after.Cloud.Name {
		differs("cloudName", before.Cloud.Name, after.Cloud.Name)
	}
	if a, b := strings.TrimSpace(before.Identity.TenantID), strings.TrimSpace(after.Identity.TenantID); a != b {
		differs("tenantId", a, b)
	}
	afterPod, _ := after.Identity.PodIdentity()
	switch {
	case podIdentity != afterPod:
		differs("usePodIdentity", fmt.Sprint(podIdentity), fmt.Sprint(afterPod))
	case podIdentity && w.tmpl.Labels[contract.LabelPodIdentity] != mutated.tmpl.Labels[contract.LabelPodIdentity]:
		differs("the pod's label "+contract.LabelPodIdentity, w.tmpl.Labels[contract.LabelPodIdentity], mutated.tmpl.Labels[contract.LabelPodIdentity])
	case !podIdentity && strings.TrimSpace(before.Identity.ClientID) != strings.TrimSpace(after.Identity.ClientID):
		differs("clientID", strings.TrimSpace(before.Identity.ClientID), strings.TrimSpace(after.Identity.ClientID))
	}
	if len(before.Objects) != len(after.Objects) {
		diffs = append(diffs, fmt.Sprintf("the files would differ: %d objects would become %d", len(before.Objects), len(after.Objects)))
	} else {
		for i := range before.Objects {
			if a, b := file(before.Objects[i]), file(after.Objects[i]); a != b {
				differs(fmt.Sprintf("object %d", i+1), a, b)
			}
		}
	}
	// The same containers mount it, at the same path.
	want := map[string]bool{}
	for _, name := range mounting {
		want[name] = true
	}
	for _, cs := range [][]corev1.Container{mutated.tmpl.Spec.InitContainers, mutated.tmpl.Spec.Containers} {
		for _, c := range cs {
			at := ""
			for _, vm := range c.VolumeMounts {
				if vm.Name == contract.VolumeName {
					at = path.Clean(vm.MountPath)
				}
			}
			switch {
			case want[c.Name] && at != mountPath:
				diffs = append(diffs, fmt.Sprintf("container %q would not get the files at %s", c.Name, mountPath))
			case !want[c.Name] && at != "":
				diffs = append(diffs, fmt.Sprintf("container %q would get files at %s it does not have today", c.Name, at))
			}
		}
	}
	return slices.Compact(diffs)
}

// file is what decides an object's file: what is read, how it is rendered, its name
// and mode.
func file(o contract.Object) string {
	format, encoding := o.Format, o.Encoding
	if format == "" {
		format = contract.FormatPEM
	}
	if encoding == "" {
		encoding = contract.EncodingUTF8
	}
	return fmt.Sprintf("%s:%s@%s as %s (format %s, encoding %s, mode %04o)", o.ObjectType(), o.Name, strings.ToLower(o.Version), o.FileName(), format, encoding, o.Mode(keyvault.DefaultFileMode))
}
