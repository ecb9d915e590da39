package csi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// SecretProviderClassAPI is the path prefix of the Secrets Store CSI driver's
// SecretProviderClass resource (secrets-store.csi.x-k8s.io/v1).
const SecretProviderClassAPI = "/apis/secrets-store.csi.x-k8s.io/v1"

// ErrClass is wrapped by every error about a volume's SecretProviderClass.
var ErrClass = errors.New("SecretProviderClass")

// ClassGetter returns the spec.parameters of a SecretProviderClass with provider azure.
// Implementations are safe for concurrent use.
type ClassGetter interface {
	Parameters(ctx context.Context, namespace, name string) (map[string]string, error)
}

// secretProviderClass is a SecretProviderClass as the plugin reads it: every field of
// its spec, so that none is silently ignored.
type secretProviderClass struct {
	Spec map[string]json.RawMessage `json:"spec"`
}

// Parameters implements ClassGetter.
func (c *KubeClient) Parameters(ctx context.Context, namespace, name string) (map[string]string, error) {
	ref := namespace + "/" + name
	var spc secretProviderClass
	path := SecretProviderClassAPI + "/namespaces/" + url.PathEscape(namespace) + "/secretproviderclasses/" + url.PathEscape(name)
	if err := c.do(ctx, http.MethodGet, path, nil, &spc); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
			return nil, fmt.Errorf("%w %s not found: create it in the pod's namespace", ErrClass, ref)
		}
		return nil, fmt.Errorf("%w %s: %w", ErrClass, ref, err)
	}
	return classParameters(ref, spc)
}

// classParameters checks the class's spec and returns spec.parameters. A field kvinject
// does not honour fails the mount, naming it and what to do instead: spec.secretObjects
// (kvinject syncs no Kubernetes Secret), and any field it does not know. An empty
// secretObjects list cannot change anything and is accepted.
func classParameters(ref string, spc secretProviderClass) (map[string]string, error) {
	var provider string
	if raw, ok := spc.Spec["provider"]; ok {
		if err := json.Unmarshal(raw, &provider); err != nil {
			return nil, fmt.Errorf("%w %s: spec.provider must be a string", ErrClass, ref)
		}
	}
	if provider != "azure" {
		return nil, fmt.Errorf("%w %s has provider %q; kvinject serves provider azure only", ErrClass, ref, provider)
	}
	var unknown []string
	for field, raw := range spc.Spec {
		switch field {
		case "provider", "parameters":
		case "secretObjects":
			var objs []json.RawMessage
			if err := json.Unmarshal(raw, &objs); err != nil || len(objs) > 0 {
				return nil, fmt.Errorf("%w %s: spec.secretObjects is not supported: kvinject mounts files and syncs no Kubernetes Secret, so environment variables fed from one would go stale; read the mounted files instead (or keep this workload on the Secrets Store CSI driver)", ErrClass, ref)
			}
		default:
			unknown = append(unknown, strconv.Quote(truncateKey(field)))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		more := ""
		if len(unknown) > 5 {
			more = fmt.Sprintf(" and %d more", len(unknown)-5)
			unknown = unknown[:5]
		}
		return nil, fmt.Errorf("%w %s: unknown field in spec: %s%s; a SecretProviderClass for kvinject has spec.provider and spec.parameters (and an empty spec.secretObjects); remove it", ErrClass, ref, strings.Join(unknown, ", "), more)
	}
	var params map[string]any
	if raw, ok := spc.Spec["parameters"]; ok {
		if err := json.Unmarshal(raw, &params); err != nil {
			return nil, fmt.Errorf("%w %s: spec.parameters must be a map of strings", ErrClass, ref)
		}
	}
	out := make(map[string]string, len(params))
	for k, v := range params {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w %s: spec.parameters.%s must be a string", ErrClass, ref, k)
		}
		out[k] = s
	}
	return out, nil
}

// CheckClass checks a SecretProviderClass's spec as a mount would, and returns its
// parameters: the kubectl plugin's check uses it to say whether a class moves to
// kvinject. ref is "namespace/name".
func CheckClass(ref string, spec map[string]json.RawMessage) (map[string]string, error) {
	return classParameters(ref, secretProviderClass{Spec: spec})
}
