package mutate

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/policy"
)

// Lookup reads what Mutate needs beyond the pod: a namespace's labels and annotations,
// and service-account annotations. Implementations must be safe for concurrent use; a
// missing object is empty, not an error.
type Lookup interface {
	Namespace(ctx context.Context, name string) (Metadata, error)
	ServiceAccountAnnotations(ctx context.Context, namespace, name string) (map[string]string, error)
}

// Metadata is what Mutate reads of a namespace.
type Metadata struct {
	Labels      map[string]string
	Annotations map[string]string
}

// PolicySource returns the tenancy policies in force: a *policy.Set that is nil or
// empty when there are none, and that refuses everything when they cannot be read.
// Implementations must be safe for concurrent use.
type PolicySource interface {
	Policies() *policy.Set
}

// NoPolicies is the PolicySource of a cluster without tenancy policies.
var NoPolicies PolicySource = staticPolicies{}

type staticPolicies struct{ set *policy.Set }

func (s staticPolicies) Policies() *policy.Set { return s.set }

// StaticPolicies is a PolicySource that always returns set.
func StaticPolicies(set *policy.Set) PolicySource { return staticPolicies{set: set} }

// Mutator turns annotated pods into injected pods. It is safe for concurrent use.
type Mutator struct {
	config   Config
	lookup   Lookup
	policies PolicySource
}

// NewMutator returns a Mutator for a configuration that passed Validate. A nil
// policies is NoPolicies.
func NewMutator(config Config, lookup Lookup, policies PolicySource) *Mutator {
	if policies == nil {
		policies = NoPolicies
	}
	return &Mutator{config: config, lookup: lookup, policies: policies}
}

// Outcome says what Mutate did.
type Outcome string

// Outcomes of Mutate.
const (
	// Injected: the pod was changed; Result.Patch holds the operations.
	Injected Outcome = "injected"
	// Unchanged: no annotation, or already injected.
	Unchanged Outcome = "unchanged"
)

// Result is a mutation.
type Result struct {
	Outcome Outcome
	// Pod is the mutated copy, or the input pod itself when Unchanged.
	Pod *corev1.Pod
	// Patch holds the JSON patch from the input pod to Pod, empty when Unchanged.
	Patch []jsonpatch.JsonPatchOperation
	// Warnings are for the pod's author: defaults used, containers skipped, what an
	// Audit policy would refuse.
	Warnings []string
	// Audit is what the namespace's Audit KeyVaultAccessPolicies would refuse (also
	// among Warnings); nil for nothing.
	Audit *policy.Error
}

// Mutate returns what pod becomes at admission in namespace (the request's namespace:
// a pod made by a controller may not carry one yet). It never modifies pod. A pod
// without contract.AnnotationSecrets, or one already injected, is Unchanged. Invalid
// annotations and conflicts are a *Denial; a failed Lookup is returned wrapped.
func (m *Mutator) Mutate(ctx context.Context, pod *corev1.Pod, namespace string) (*Result, error) {
	list, ok := pod.Annotations[contract.AnnotationSecrets]
	if !ok {
		return &Result{Outcome: Unchanged, Pod: pod}, nil
	}
	if why := windowsOnly(pod); why != "" {
		return nil, deny("", "the pod can only run on Windows nodes (%s), and kvinject's node plugin serves Linux nodes only, so its secrets volume would never mount; run the pod on Linux nodes or remove %s", why, contract.AnnotationSecrets)
	}
	targets, warnings, err := selectContainers(pod)
	if err != nil {
		return nil, err
	}
	mountPath := m.config.MountPath
	if p, ok := pod.Annotations[contract.AnnotationMountPath]; ok {
		if err := validateMountPath(p); err != nil {
			return nil, deny(contract.AnnotationMountPath, "%v", err)
		}
		mountPath = p
	}

	// A pod that carries our volume and status was injected in an earlier pass
	// (reinvocation, or a copy of an injected pod): keep its volume and label, and only
	// bring the mounts up to date.
	var volume *corev1.Volume
	var label string
	var audit *policy.Error
	if i := volumeIndex(pod, contract.VolumeName); i >= 0 {
		v := &pod.Spec.Volumes[i]
		if pod.Annotations[contract.AnnotationStatus] != contract.StatusInjected || v.CSI == nil || v.CSI.Driver != m.config.DriverName {
			return nil, deny("", "the pod already has a volume named %q that kvinject did not write; rename that volume", contract.VolumeName)
		}
		// A copy of an injected pod may come from another namespace: its volume is held
		// to this namespace's policies.
		var err error
		if audit, err = m.checkInjected(ctx, pod, namespace, v.CSI.VolumeAttributes); err != nil {
			return nil, err
		}
		if audit != nil {
			warnings = append(warnings, audit.Error())
		}
	} else {
		objects, err := ParseSecrets(list, m.config.MaxEntries)
		if err != nil {
			return nil, err
		}
		s, err := m.resolve(ctx, pod, namespace)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, s.warnings...)
		audit = s.audit
		if s.selector != "" {
			if have, ok := pod.Labels[contract.LabelPodIdentity]; ok && have != s.selector {
				return nil, deny(contract.AnnotationIdentity, "the pod's label %s=%q differs from the identity %q; remove the label or make them equal", contract.LabelPodIdentity, have, s.selector)
			}
			label = s.selector
		}
		volume, err = m.buildVolume(s, objects)
		if err != nil {
			return nil, err
		}
	}

	// A Secrets Store CSI volume mounted at our path (a workload half way through its
	// migration) gives way: kvinject's mount takes its place, as the annotation asks.
	displaced := map[*corev1.Container]int{}
	for _, t := range targets {
		i, err := checkMounts(pod, t.container, mountPath)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			displaced[t.container] = i
			vm := t.container.VolumeMounts[i]
			warnings = append(warnings, fmt.Sprintf("container %q mounted the Secrets Store CSI driver's volume %q at %s; kvinject's volume takes its place there, as %s asks: remove that mount (or %s to keep the Secrets Store volume)",
				t.container.Name, vm.Name, mountPath, contract.AnnotationSecrets, contract.AnnotationSecrets))
		}
	}

	out := pod.DeepCopy()
	var patch []jsonpatch.JsonPatchOperation
	if len(displaced) > 0 {
		// Replace the displaced mounts, then leave out the Secrets Store volumes no
		// container mounts any more (the old driver would mount them for nothing),
		// highest index first so that the indices hold.
		mount := corev1.VolumeMount{Name: contract.VolumeName, MountPath: mountPath, ReadOnly: true}
		for _, t := range targets {
			if i, ok := displaced[t.container]; ok {
				t.in(out).VolumeMounts[i] = mount
				patch = append(patch, jsonpatch.NewOperation("replace", fmt.Sprintf("/spec/%s/%d/volumeMounts/%d", t.field, t.index, i), mount))
			}
		}
		for i := len(out.Spec.Volumes) - 1; i >= 0; i-- {
			v := out.Spec.Volumes[i]
			if v.CSI == nil || v.CSI.Driver != contract.SecretsStoreDriverName || mounted(out, v.Name) {
				continue
			}
			warnings = append(warnings, fmt.Sprintf("volume %q of the Secrets Store CSI driver is no longer mounted by any container and is left out of the pod: remove it from the pod template", v.Name))
			out.Spec.Volumes = slices.Delete(out.Spec.Volumes, i, i+1)
			patch = append(patch, jsonpatch.NewOperation("remove", fmt.Sprintf("/spec/volumes/%d", i), nil))
		}
	}
	if label != "" && pod.Labels[contract.LabelPodIdentity] != label {
		if out.Labels == nil {
			out.Labels = map[string]string{contract.LabelPodIdentity: label}
			patch = append(patch, jsonpatch.NewOperation("add", "/metadata/labels", out.Labels))
		} else {
			out.Labels[contract.LabelPodIdentity] = label
			patch = append(patch, jsonpatch.NewOperation("add", "/metadata/labels/"+escape(contract.LabelPodIdentity), label))
		}
	}
	if volume != nil {
		if out.Spec.Volumes == nil {
			patch = append(patch, jsonpatch.NewOperation("add", "/spec/volumes", []*corev1.Volume{volume}))
		} else {
			patch = append(patch, jsonpatch.NewOperation("add", "/spec/volumes/-", volume))
		}
		out.Spec.Volumes = append(out.Spec.Volumes, *volume)
	}
	mount := corev1.VolumeMount{Name: contract.VolumeName, MountPath: mountPath, ReadOnly: true}
	for _, t := range targets {
		if _, replaced := displaced[t.container]; replaced || mountsVolume(t.container) {
			continue
		}
		c := t.in(out)
		base := fmt.Sprintf("/spec/%s/%d/volumeMounts", t.field, t.index)
		if c.VolumeMounts == nil {
			patch = append(patch, jsonpatch.NewOperation("add", base, []corev1.VolumeMount{mount}))
		} else {
			patch = append(patch, jsonpatch.NewOperation("add", base+"/-", mount))
		}
		c.VolumeMounts = append(c.VolumeMounts, mount)
	}
	if len(patch) == 0 {
		return &Result{Outcome: Unchanged, Pod: pod, Warnings: warnings, Audit: audit}, nil
	}
	if out.Annotations[contract.AnnotationStatus] != contract.StatusInjected {
		op := "add"
		if _, ok := out.Annotations[contract.AnnotationStatus]; ok {
			op = "replace"
		}
		out.Annotations[contract.AnnotationStatus] = contract.StatusInjected
		patch = append(patch, jsonpatch.NewOperation(op, "/metadata/annotations/"+escape(contract.AnnotationStatus), contract.StatusInjected))
	}
	return &Result{Outcome: Injected, Pod: out, Patch: patch, Warnings: warnings, Audit: audit}, nil
}

// checkInjected asks the namespace's policies about a volume kvinject wrote in an
// earlier pass, or for another pod this one copies.
func (m *Mutator) checkInjected(ctx context.Context, pod *corev1.Pod, namespace string, attrs map[string]string) (*policy.Error, error) {
	policies := m.policies.Policies()
	if policies.Empty() {
		return nil, nil
	}
	ns, err := m.lookup.Namespace(ctx, namespace)
	if err != nil {
		return nil, fmt.Errorf("read namespace %q: %w", namespace, err)
	}
	id := policy.Identity{WorkloadIdentityClientID: attrs[contract.AttrClientID]}
	if attrs[contract.AttrUsePodIdentity] == "true" {
		id = policy.Identity{PodIdentity: pod.Labels[contract.LabelPodIdentity]}
	}
	res := policies.Namespace(namespace, ns.Labels).Check(policy.Request{Vault: attrs[contract.AttrKeyVaultName], Tenant: attrs[contract.AttrTenantID], Identity: id})
	if res.Denied != nil {
		return nil, policyDenial(res.Denied, id.PodIdentity != "")
	}
	return res.Audited, nil
}

// buildVolume returns the CSI inline volume for the resolved settings.
func (m *Mutator) buildVolume(s *settings, objects []contract.Object) (*corev1.Volume, error) {
	encoded, err := contract.MarshalObjects(objects)
	if err != nil {
		return nil, fmt.Errorf("encode objects: %w", err)
	}
	attrs := map[string]string{
		contract.AttrKeyVaultName:   s.vault,
		contract.AttrTenantID:       s.tenant,
		contract.AttrCloudName:      m.config.CloudName,
		contract.AttrUsePodIdentity: fmt.Sprint(s.selector != ""),
		contract.AttrObjects:        encoded,
	}
	if s.clientID != "" {
		attrs[contract.AttrClientID] = s.clientID
	}
	readOnly := true
	return &corev1.Volume{
		Name: contract.VolumeName,
		VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
			Driver:           m.config.DriverName,
			ReadOnly:         &readOnly,
			VolumeAttributes: attrs,
		}},
	}, nil
}

// target is a container selected to mount the volume.
type target struct {
	field     string // "containers" or "initContainers"
	index     int
	container *corev1.Container
}

// in returns the target's container in another copy of the pod.
func (t target) in(pod *corev1.Pod) *corev1.Container {
	if t.field == "initContainers" {
		return &pod.Spec.InitContainers[t.index]
	}
	return &pod.Spec.Containers[t.index]
}

// selectContainers returns the containers named by contract.AnnotationContainers (all
// containers and init containers when absent), and a warning per container left out.
func selectContainers(pod *corev1.Pod) ([]target, []string, error) {
	all := make([]target, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	for i := range pod.Spec.InitContainers {
		all = append(all, target{"initContainers", i, &pod.Spec.InitContainers[i]})
	}
	for i := range pod.Spec.Containers {
		all = append(all, target{"containers", i, &pod.Spec.Containers[i]})
	}
	list, ok := pod.Annotations[contract.AnnotationContainers]
	if !ok {
		return all, nil, nil
	}
	wanted := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, nil, deny(contract.AnnotationContainers, "an entry is empty: list container names separated by ','")
		}
		wanted[name] = true
	}
	names := make([]string, 0, len(all))
	for _, t := range all {
		names = append(names, t.container.Name)
	}
	for name := range wanted {
		if !contains(names, name) {
			return nil, nil, deny(contract.AnnotationContainers, "the pod has no container %q; its containers are %s", name, strings.Join(names, ", "))
		}
	}
	var selected []target
	var warnings []string
	for _, t := range all {
		if wanted[t.container.Name] {
			selected = append(selected, t)
			continue
		}
		warnings = append(warnings, fmt.Sprintf("%s: container %q is not listed, so it does not get the secrets", contract.AnnotationContainers, t.container.Name))
	}
	return selected, warnings, nil
}

// checkMounts refuses a container that mounts something other than our volume at
// mountPath, except a volume of the Secrets Store CSI driver mounted whole: its
// mount's index is returned for ours to take its place (-1 for none).
func checkMounts(pod *corev1.Pod, c *corev1.Container, mountPath string) (int, error) {
	for i, vm := range c.VolumeMounts {
		if vm.Name == contract.VolumeName || path.Clean(vm.MountPath) != mountPath {
			continue
		}
		if v := volumeIndex(pod, vm.Name); v >= 0 && vm.SubPath == "" && vm.SubPathExpr == "" {
			if csi := pod.Spec.Volumes[v].CSI; csi != nil && csi.Driver == contract.SecretsStoreDriverName {
				return i, nil
			}
		}
		return -1, deny(contract.AnnotationMountPath, "container %q already mounts volume %q at %s; set %s to another path or remove that mount", c.Name, vm.Name, mountPath, contract.AnnotationMountPath)
	}
	return -1, nil
}

// mounted reports whether any container of pod mounts the volume name.
func mounted(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, vm := range c.VolumeMounts {
				if vm.Name == name {
					return true
				}
			}
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		for _, vm := range c.VolumeMounts {
			if vm.Name == name {
				return true
			}
		}
	}
	return false
}

func mountsVolume(c *corev1.Container) bool {
	for _, vm := range c.VolumeMounts {
		if vm.Name == contract.VolumeName {
			return true
		}
	}
	return false
}

func volumeIndex(pod *corev1.Pod, name string) int {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return i
		}
	}
	return -1
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// escape escapes a JSON pointer token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
