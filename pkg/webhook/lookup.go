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

// metadataLookup reads namespace and service-account annotations through a
// controller-runtime reader, normally the manager's cache. It asks for metadata only,
// so the cache holds ObjectMeta, not whole objects.
type metadataLookup struct {
	reader client.Reader
}

var _ mutate.Lookup = metadataLookup{}

func (l metadataLookup) NamespaceAnnotations(ctx context.Context, namespace string) (map[string]string, error) {
	return l.annotations(ctx, namespaceMeta(), types.NamespacedName{Name: namespace})
}

func (l metadataLookup) ServiceAccountAnnotations(ctx context.Context, namespace, name string) (map[string]string, error) {
	return l.annotations(ctx, serviceAccountMeta(), types.NamespacedName{Namespace: namespace, Name: name})
}

func (l metadataLookup) annotations(ctx context.Context, obj *metav1.PartialObjectMetadata, key types.NamespacedName) (map[string]string, error) {
	if err := l.reader.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return obj.Annotations, nil
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
