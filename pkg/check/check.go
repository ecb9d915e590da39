// Package check tells, for a cluster that runs the Secrets Store CSI driver with its
// Azure provider, which SecretProviderClasses and workloads would move to kvinject
// unchanged, which with changes, and which cannot, and why. It judges with the node
// plugin's own checks (pkg/csi): a class that check says moves is one the plugin
// mounts. kubectl kvinject check is its command.
package check

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/csi"
	"github.com/kvinject/kvinject/pkg/identity"
)

// Verdict is check's answer for one object.
type Verdict string

// The three answers, from best to worst.
const (
	Unchanged Verdict = "moves unchanged"
	Changes   Verdict = "moves with changes"
	Cannot    Verdict = "cannot move"
)

func worse(a, b Verdict) Verdict {
	order := []Verdict{Unchanged, Changes, Cannot}
	if slices.Index(order, b) > slices.Index(order, a) {
		return b
	}
	return a
}

// Finding is the answer for one SecretProviderClass or workload.
type Finding struct {
	Kind      string  `json:"kind"`
	Namespace string  `json:"namespace"`
	Name      string  `json:"name"`
	Verdict   Verdict `json:"verdict"`
	// Changes are what moving needs beyond the driver name (Verdict Changes).
	Changes []string `json:"changes,omitempty"`
	// Problems name the field that cannot move and the alternative (Verdict Cannot).
	Problems []string `json:"problems,omitempty"`
}

// Class judges one SecretProviderClass (spec as the API server returns it). Classes of
// other providers are not kvinject's concern: ok is false for them.
func Class(namespace, name string, spec map[string]json.RawMessage) (f Finding, ok bool) {
	var provider string
	_ = json.Unmarshal(spec["provider"], &provider)
	if provider != "azure" {
		return Finding{}, false
	}
	f = Finding{Kind: "SecretProviderClass", Namespace: namespace, Name: name, Verdict: Unchanged}
	params, err := csi.CheckClass(namespace+"/"+name, spec)
	var parsed csi.Parameters
	if err == nil {
		parsed, err = csi.ParseParameters(params, contract.DefaultMaxObjects)
	}
	if err == nil {
		err = identity.RefuseNodeIdentity(parsed.Identity)
	}
	if err != nil {
		f.Verdict, f.Problems = Cannot, []string{err.Error()}
		return f, true
	}
	var ignored []string
	for _, k := range csi.IgnoredParameters {
		if _, ok := params[k]; ok {
			ignored = append(ignored, k)
		}
	}
	if len(ignored) > 0 {
		f.Verdict = Changes
		f.Changes = append(f.Changes, fmt.Sprintf("kvinject ignores spec.parameters %s (they cannot change the files); remove them", strings.Join(ignored, " and ")))
	}
	return f, true
}

// Workload judges a workload (kind, namespace, name) by its pod spec's Secrets Store
// volumes; classes are the namespace's judged classes by name. ok is false when the
// pod spec has no Secrets Store volume.
func Workload(kind, namespace, name string, spec corev1.PodSpec, classes map[string]Finding) (f Finding, ok bool) {
	f = Finding{Kind: kind, Namespace: namespace, Name: name, Verdict: Unchanged}
	for _, v := range spec.Volumes {
		if v.CSI == nil || v.CSI.Driver != contract.SecretsStoreDriverName {
			continue
		}
		ok = true
		class := v.CSI.VolumeAttributes[contract.AttrSecretProviderClass]
		if class == "" {
			f.Verdict = Cannot
			f.Problems = append(f.Problems, fmt.Sprintf("volume %s names no secretProviderClass, which the Secrets Store driver needs; fix the volume first", v.Name))
			continue
		}
		c, found := classes[class]
		switch {
		case !found:
			f.Verdict = Cannot
			f.Problems = append(f.Problems, fmt.Sprintf("volume %s: SecretProviderClass %s/%s not found (or not provider azure)", v.Name, namespace, class))
			continue
		case c.Verdict == Cannot:
			f.Verdict = Cannot
			f.Problems = append(f.Problems, fmt.Sprintf("volume %s: SecretProviderClass %s cannot move: %s", v.Name, class, strings.Join(c.Problems, "; ")))
			continue
		}
		f.Verdict = worse(f.Verdict, c.Verdict)
		for _, ch := range c.Changes {
			f.Changes = append(f.Changes, fmt.Sprintf("volume %s: SecretProviderClass %s: %s", v.Name, class, ch))
		}
		if extra := extraAttributes(v.CSI.VolumeAttributes); len(extra) > 0 {
			f.Verdict = Cannot
			f.Problems = append(f.Problems, fmt.Sprintf("volume %s: volumeAttributes %s beside secretProviderClass: the plugin reads the class's parameters only; move them into the class", v.Name, strings.Join(extra, ", ")))
		}
		if v.CSI.ReadOnly == nil || !*v.CSI.ReadOnly {
			f.Verdict = worse(f.Verdict, Changes)
			f.Changes = append(f.Changes, fmt.Sprintf("volume %s: set readOnly: true (kvinject mounts read-only volumes only)", v.Name))
		}
	}
	return f, ok
}

func extraAttributes(attrs map[string]string) []string {
	var out []string
	for k := range attrs {
		if k != contract.AttrSecretProviderClass {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
