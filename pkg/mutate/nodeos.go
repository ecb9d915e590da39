package mutate

import (
	corev1 "k8s.io/api/core/v1"
)

// labelOS is the well-known node label of the node's operating system.
const labelOS = "kubernetes.io/os"

// windowsOnly says why a pod can only be scheduled on Windows nodes, "" when it can run
// on Linux. kvinject's node plugin runs on Linux nodes only, so such a pod's volume
// would never mount and the pod would hang in ContainerCreating.
func windowsOnly(pod *corev1.Pod) string {
	if pod.Spec.OS != nil && pod.Spec.OS.Name == corev1.Windows {
		return "spec.os.name is windows"
	}
	if pod.Spec.NodeSelector[labelOS] == string(corev1.Windows) {
		return "its nodeSelector requires kubernetes.io/os=windows"
	}
	aff := pod.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	terms := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return ""
	}
	// The terms are ORed: the pod is Windows-only when every term excludes Linux.
	for _, term := range terms {
		if !excludesLinux(term) {
			return ""
		}
	}
	return "its required node affinity admits no Linux node"
}

// excludesLinux reports whether a node selector term (its expressions ANDed) can never
// match a node labelled kubernetes.io/os=linux.
func excludesLinux(term corev1.NodeSelectorTerm) bool {
	for _, e := range term.MatchExpressions {
		if e.Key != labelOS {
			continue
		}
		hasLinux := false
		for _, v := range e.Values {
			if v == string(corev1.Linux) {
				hasLinux = true
			}
		}
		switch e.Operator {
		case corev1.NodeSelectorOpIn:
			if !hasLinux {
				return true
			}
		case corev1.NodeSelectorOpNotIn:
			if hasLinux {
				return true
			}
		case corev1.NodeSelectorOpDoesNotExist:
			return true
		}
	}
	return false
}
