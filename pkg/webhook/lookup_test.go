package webhook

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// metaReader answers Get for PartialObjectMetadata from a map of name -> annotations,
// NotFound otherwise, and counts calls.
type metaReader struct {
	objects map[string]map[string]string
	err     error
	calls   int
}

func (r *metaReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.calls++
	if r.err != nil {
		return r.err
	}
	k := key.Name
	if key.Namespace != "" {
		k = key.Namespace + "/" + key.Name
	}
	ann, ok := r.objects[k]
	if !ok {
		return apierrors.NewNotFound(corev1.Resource("namespaces"), key.Name)
	}
	obj.(*metav1.PartialObjectMetadata).Annotations = ann
	obj.(*metav1.PartialObjectMetadata).Labels = map[string]string{"name": k}
	return nil
}

func (r *metaReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("not used")
}

// TestLookupFallsBackToLiveRead: a namespace or service account the informers have not
// seen yet is read from the API server; one that exists nowhere has no annotations; a
// failed live read is an error, never "no annotations".
func TestLookupFallsBackToLiveRead(t *testing.T) {
	t.Parallel()
	cache := &metaReader{objects: map[string]map[string]string{"cached": {"kvinject.io/vault": "from-cache"}}}
	live := &metaReader{objects: map[string]map[string]string{
		"cached": {"kvinject.io/vault": "stale-live"}, "new": {"kvinject.io/vault": "from-live"}, "team/sa": {"azure.workload.identity/client-id": "x"}}}
	l := metadataLookup{cache: cache, live: live}
	ctx := t.Context()
	for _, tc := range []struct {
		ns, want  string
		liveCalls int
	}{
		{"cached", "from-cache", 0},
		{"new", "from-live", 1},
		{"gone", "", 2},
	} {
		got, err := l.Namespace(ctx, tc.ns)
		wantLabel := tc.ns
		if tc.want == "" {
			wantLabel = ""
		}
		if err != nil || got.Annotations["kvinject.io/vault"] != tc.want || got.Labels["name"] != wantLabel || live.calls != tc.liveCalls {
			t.Fatalf("namespace %s: %+v, %v after %d live reads", tc.ns, got, err, live.calls)
		}
	}
	if got, err := l.ServiceAccountAnnotations(ctx, "team", "sa"); err != nil || got["azure.workload.identity/client-id"] != "x" {
		t.Fatalf("service account: %v, %v", got, err)
	}
	live.err = errors.New("connection refused")
	if _, err := l.Namespace(ctx, "new"); err == nil {
		t.Fatal("a failed live read was taken as an unannotated namespace")
	}
}
