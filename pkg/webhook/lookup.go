package webhook

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kvinject/kvinject/pkg/mutate"
)

// metadataLookup reads namespace labels and annotations, and service-account
// annotations, from the manager's
// cache, and from the API server (live) when the cache does not have the object: a
// namespace or service account created just before the pod may not have reached the
// informers yet, and treating it as unannotated would silently apply the cluster
// defaults. It asks for metadata only, so the cache holds ObjectMeta, not whole objects.
type metadataLookup struct {
	cache client.Reader
	live  client.Reader
}

var _ mutate.Lookup = metadataLookup{}

func (l metadataLookup) Namespace(ctx context.Context, namespace string) (mutate.Metadata, error) {
	obj, err := l.get(ctx, namespaceMeta(), types.NamespacedName{Name: namespace})
	if err != nil || obj == nil {
		return mutate.Metadata{}, err
	}
	return mutate.Metadata{Labels: obj.Labels, Annotations: obj.Annotations}, nil
}

func (l metadataLookup) ServiceAccountAnnotations(ctx context.Context, namespace, name string) (map[string]string, error) {
	obj, err := l.get(ctx, serviceAccountMeta(), types.NamespacedName{Namespace: namespace, Name: name})
	if err != nil || obj == nil {
		return nil, err
	}
	return obj.Annotations, nil
}

// get reads obj from the cache, else live; a missing object is nil, not an error.
func (l metadataLookup) get(ctx context.Context, obj *metav1.PartialObjectMetadata, key types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	err := l.cache.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && l.live != nil {
		err = l.live.Get(ctx, key, obj)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return obj, nil
}

func namespaceMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return m
}

func serviceAccountMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceAccount"))
	return m
}
