package csi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"k8s.io/klog/v2"
)

// Event reasons the plugin records on pods.
const (
	ReasonRefreshFailed = "KeyVaultRefreshFailed"
)

// EventRecorder records an Event on a pod. Implementations must not block the
// publish for long and are safe for concurrent use. Messages passed in are already
// free of secrets.
type EventRecorder interface {
	Warning(ctx context.Context, pod PodInfo, reason, message string)
}

// Warning implements EventRecorder with a core/v1 Event; failures are logged and
// otherwise ignored.
func (c *KubeClient) Warning(ctx context.Context, pod PodInfo, reason, message string) {
	now := time.Now().UTC().Format(time.RFC3339)
	ev := map[string]any{
		"apiVersion": "v1",
		"kind":       "Event",
		"metadata":   map[string]any{"generateName": pod.Name + ".", "namespace": pod.Namespace},
		"involvedObject": map[string]any{
			"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "namespace": pod.Namespace, "uid": pod.UID,
		},
		"reason":             reason,
		"message":            message,
		"type":               "Warning",
		"source":             map[string]any{"component": c.component, "host": c.node},
		"firstTimestamp":     now,
		"lastTimestamp":      now,
		"count":              1,
		"reportingComponent": c.component,
		"reportingInstance":  fmt.Sprintf("%s-%s", c.component, c.node),
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.do(ctx, http.MethodPost, "/api/v1/namespaces/"+url.PathEscape(pod.Namespace)+"/events", ev, nil); err != nil {
		klog.FromContext(ctx).Error(err, "Cannot record event", "pod", klog.KRef(pod.Namespace, pod.Name), "reason", reason)
	}
}
