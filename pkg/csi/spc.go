package csi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
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

// secretProviderClass is the part of a SecretProviderClass the plugin reads.
type secretProviderClass struct {
	Spec struct {
		Provider   string         `json:"provider"`
		Parameters map[string]any `json:"parameters"`
	} `json:"spec"`
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

// classParameters checks spec.provider and returns spec.parameters.
func classParameters(ref string, spc secretProviderClass) (map[string]string, error) {
	if spc.Spec.Provider != "azure" {
		return nil, fmt.Errorf("%w %s has provider %q; kvinject serves provider azure only", ErrClass, ref, spc.Spec.Provider)
	}
	out := make(map[string]string, len(spc.Spec.Parameters))
	for k, v := range spc.Spec.Parameters {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w %s: spec.parameters.%s must be a string", ErrClass, ref, k)
		}
		out[k] = s
	}
	return out, nil
}
