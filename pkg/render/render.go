// Package render mutates the pod templates in Kubernetes manifests exactly as the
// webhook mutates pods at admission (pkg/mutate, the same code path), offline: for
// GitOps pipelines that want to see the result before it reaches a cluster. kubectl
// kvinject render (cmd/kubectl-kvinject) is its command.
package render

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/pkg/apis/kvinject/v1alpha1"
	"github.com/kvinject/kvinject/pkg/mutate"
	"github.com/kvinject/kvinject/pkg/policy"
)

// WebhookName is the name the API server gives the webhook in a denial, so that render
// prints the same words kubectl apply would.
const WebhookName = "pods.kvinject.io"

// Options are what render needs beyond the manifests: the cluster configuration (the
// webhook's --config), the namespace of objects that name none, and the cluster's
// Namespaces, ServiceAccounts and KeyVaultAccessPolicies (from files, or from the
// manifests themselves).
type Options struct {
	Config mutate.Config
	// Namespace is the namespace of objects without metadata.namespace ("default").
	Namespace string
	// Cluster are objects that stand for the cluster's state: Namespace,
	// ServiceAccount and KeyVaultAccessPolicy documents. Such documents in the rendered
	// manifests count too.
	Cluster []Document
}

// Document is one YAML or JSON document with where it came from.
type Document struct {
	Source string
	Data   []byte
}

// Result is one rendered document.
type Result struct {
	Document
	// Kind and Name identify the object ("Deployment", "web").
	Kind, Name string
	// Injected is true when render changed a pod template.
	Injected bool
	// Warnings are the webhook's admission warnings for the pod template.
	Warnings []string
	// Err is the webhook's denial (a *mutate.Denial), or why the document could not be
	// read.
	Err error
}

// Split reads the YAML (or JSON) documents of r; source names r in errors.
func Split(r io.Reader, source string) ([]Document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Document
	for i := 1; ; i++ {
		b, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		if len(bytes.TrimSpace(stripComments(b))) == 0 {
			continue
		}
		docs = append(docs, Document{Source: fmt.Sprintf("%s#%d", source, i), Data: b})
	}
}

// podTemplatePaths are where each workload kind keeps its pod template, as a JSON
// pointer ("" for a Pod itself).
var podTemplatePaths = map[string]string{
	"v1/Pod":                   "",
	"apps/v1/Deployment":       "/spec/template",
	"apps/v1/StatefulSet":      "/spec/template",
	"apps/v1/DaemonSet":        "/spec/template",
	"apps/v1/ReplicaSet":       "/spec/template",
	"batch/v1/Job":             "/spec/template",
	"batch/v1/CronJob":         "/spec/jobTemplate/spec/template",
	"v1/ReplicationController": "/spec/template",
}

// TemplatePath is where a workload kind keeps its pod template, as a JSON pointer (""
// for a Pod itself); ok is false for kinds without one.
func TemplatePath(apiVersion, kind string) (path string, ok bool) {
	path, ok = podTemplatePaths[apiVersion+"/"+kind]
	return path, ok
}

// Head is what is read first of a document: its type, its name and, for a List, its
// items.
type Head struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// ReadHead returns the document's head and the document as JSON.
func (d Document) ReadHead() (Head, []byte, error) {
	js, err := yaml.YAMLToJSON(d.Data)
	if err != nil {
		return Head{}, nil, fmt.Errorf("not YAML: %w", err)
	}
	var h Head
	if err := json.Unmarshal(js, &h); err != nil {
		return Head{}, nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	return h, js, nil
}

// Render mutates every pod template in docs as the webhook would, and returns one
// Result per document, in order. Documents that hold no pod template come back
// unchanged (as JSON converted to YAML). A List's items are rendered one by one.
func Render(ctx context.Context, docs []Document, o Options) ([]Result, error) {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	cluster, err := newCluster(append(append([]Document(nil), o.Cluster...), docs...), o.Namespace)
	if err != nil {
		return nil, err
	}
	r := &renderer{m: mutate.NewMutator(o.Config, cluster, mutate.StaticPolicies(cluster.policies())), cluster: cluster}
	var out []Result
	for _, d := range docs {
		out = append(out, r.doc(ctx, d, o.Namespace))
	}
	return out, nil
}

type renderer struct {
	m       *mutate.Mutator
	cluster *cluster
}

func (rd *renderer) doc(ctx context.Context, d Document, namespace string) Result {
	res := Result{Document: d}
	h, js, err := d.ReadHead()
	if err != nil {
		res.Err = err
		return res
	}
	res.Kind, res.Name = h.Kind, h.Metadata.Name
	var ops []patchOp
	if h.Kind == "List" {
		for i, item := range h.Items {
			r := rd.object(ctx, item, namespace, fmt.Sprintf("/items/%d", i))
			res.Warnings = append(res.Warnings, r.warnings...)
			if r.err != nil {
				res.Err = fmt.Errorf("items[%d] %s: %w", i, r.name, r.err)
				return res
			}
			ops = append(ops, r.ops...)
		}
	} else {
		r := rd.object(ctx, js, namespace, "")
		res.Warnings, res.Err, ops = r.warnings, r.err, r.ops
		if r.err != nil {
			return res
		}
	}
	if len(ops) == 0 {
		return res
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		res.Err = err
		return res
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		res.Err = err
		return res
	}
	patched, err := p.Apply(js)
	if err != nil {
		res.Err = fmt.Errorf("apply the webhook's patch: %w", err)
		return res
	}
	if res.Data, err = yaml.JSONToYAML(patched); err != nil {
		res.Err = err
		return res
	}
	res.Injected = true
	return res
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

type objectResult struct {
	name     string
	ops      []patchOp
	warnings []string
	err      error
}

// object mutates one object's pod template, returning the webhook's patch with its
// paths moved under prefix and the template's path.
func (rd *renderer) object(ctx context.Context, js []byte, namespace, prefix string) objectResult {
	var h Head
	if err := json.Unmarshal(js, &h); err != nil {
		return objectResult{err: err}
	}
	r := objectResult{name: h.Kind + "/" + h.Metadata.Name}
	path, ok := podTemplatePaths[h.APIVersion+"/"+h.Kind]
	if !ok {
		return r
	}
	if h.Metadata.Namespace != "" {
		namespace = h.Metadata.Namespace
	}
	pod, err := podOf(js, path)
	if err != nil {
		r.err = fmt.Errorf("%s: %w", r.name, err)
		return r
	}
	res, err := rd.m.Mutate(ctx, pod, namespace)
	if err != nil {
		var denial *mutate.Denial
		if errors.As(err, &denial) {
			r.err = fmt.Errorf("admission webhook %q denied the request: %w", WebhookName, denial)
		} else {
			r.err = err
		}
		return r
	}
	r.warnings = res.Warnings
	if _, known := rd.cluster.namespaces[namespace]; !known && res.Outcome == mutate.Injected {
		r.warnings = append(r.warnings, fmt.Sprintf("namespace %q is not among the objects given: its kvinject.io defaults and labels are not applied (add its Namespace to the input or to --cluster)", namespace))
	}
	if res.Outcome != mutate.Injected {
		return r
	}
	for _, op := range res.Patch {
		r.ops = append(r.ops, patchOp{Op: op.Operation, Path: prefix + path + op.Path, Value: op.Value})
	}
	return r
}

// podOf returns the pod a workload's controller would create from the template at
// path (the template's metadata and spec), or the Pod itself (path ""): both have the
// shape of a PodTemplateSpec.
func podOf(js []byte, path string) (*corev1.Pod, error) {
	raw := json.RawMessage(js)
	for _, key := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		if path == "" {
			break
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		var ok bool
		if raw, ok = obj[key]; !ok || string(raw) == "null" {
			return nil, fmt.Errorf("%s is missing", strings.ReplaceAll(strings.TrimPrefix(path, "/"), "/", "."))
		}
	}
	var tmpl corev1.PodTemplateSpec
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		return nil, err
	}
	return &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}, nil
}

// cluster is the Lookup and the policies that the given objects make.
type cluster struct {
	namespaces      map[string]mutate.Metadata
	serviceAccounts map[string]map[string]string
	policyObjects   []policy.Object
}

func newCluster(docs []Document, defaultNS string) (*cluster, error) {
	c := &cluster{namespaces: map[string]mutate.Metadata{}, serviceAccounts: map[string]map[string]string{}}
	for _, d := range docs {
		h, js, err := d.ReadHead()
		if err != nil {
			continue // reported when rendered
		}
		switch h.APIVersion + "/" + h.Kind {
		case "v1/Namespace":
			var ns corev1.Namespace
			if err := json.Unmarshal(js, &ns); err != nil {
				return nil, fmt.Errorf("%s: %w", d.Source, err)
			}
			c.namespaces[ns.Name] = mutate.Metadata{Labels: ns.Labels, Annotations: ns.Annotations}
		case "v1/ServiceAccount":
			var sa corev1.ServiceAccount
			if err := json.Unmarshal(js, &sa); err != nil {
				return nil, fmt.Errorf("%s: %w", d.Source, err)
			}
			ns := sa.Namespace
			if ns == "" {
				ns = defaultNS
			}
			c.serviceAccounts[ns+"/"+sa.Name] = sa.Annotations
		case v1alpha1.GroupVersion.String() + "/KeyVaultAccessPolicy":
			var p v1alpha1.KeyVaultAccessPolicy
			if err := yaml.UnmarshalStrict(d.Data, &p); err != nil {
				return nil, fmt.Errorf("%s: %w", d.Source, err)
			}
			c.policyObjects = append(c.policyObjects, policy.Object{Name: p.Name, Spec: p.Spec})
		}
	}
	sort.Slice(c.policyObjects, func(i, j int) bool { return c.policyObjects[i].Name < c.policyObjects[j].Name })
	return c, nil
}

func (c *cluster) Namespace(_ context.Context, name string) (mutate.Metadata, error) {
	return c.namespaces[name], nil
}

func (c *cluster) ServiceAccountAnnotations(_ context.Context, namespace, name string) (map[string]string, error) {
	return c.serviceAccounts[namespace+"/"+name], nil
}

// policies is nil (no policy at all, as the webhook without any) or the set.
func (c *cluster) policies() *policy.Set {
	if len(c.policyObjects) == 0 {
		return nil
	}
	return policy.NewSet(c.policyObjects)
}

// stripComments drops YAML comment lines (a document of only comments is empty).
func stripComments(b []byte) []byte {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out = append(out, line)
		}
	}
	return []byte(strings.Join(out, "\n"))
}
