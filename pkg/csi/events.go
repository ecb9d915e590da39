package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Event reasons the plugin records on pods.
const (
	// ReasonRefreshFailed (Warning): a rotation could not read Key Vault; the volume
	// keeps its previous files.
	ReasonRefreshFailed = "KeyVaultRefreshFailed"
	// ReasonRefreshed (Normal): a rotation changed files; the message names the
	// objects and their new versions, never values.
	ReasonRefreshed = "KeyVaultObjectsRefreshed"
	// ReasonPolicyAudit (Warning): a KeyVaultAccessPolicy in Audit mode would refuse
	// the volume; it was mounted.
	ReasonPolicyAudit = "PolicyAudit"
)

// Event types.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// EventRecorder records an Event on a pod. Implementations aggregate per (pod, reason):
// a repeated event updates one Event object's count, last timestamp and message rather
// than creating another, so a failing vault costs the API server one object per pod.
// They must not block the publish for long and are safe for concurrent use. Messages
// passed in are already free of secrets.
type EventRecorder interface {
	Event(ctx context.Context, pod PodInfo, eventType, reason, message string)
}

// maxAggregated bounds the (pod, reason) pairs whose count the client remembers.
const maxAggregated = 4096

// eventKey is one aggregated Event: a pod (by UID) and a reason.
type eventKey struct{ podUID, reason string }

// eventCounts remembers how often each (pod, reason) was recorded.
type eventCounts struct {
	mu     sync.Mutex
	counts map[eventKey]int
}

// next returns the count the next event of k will have, 0 when unknown (the
// Event may exist already: the plugin restarted).
func (e *eventCounts) next(k eventKey) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = map[eventKey]int{}
	}
	n, ok := e.counts[k]
	if !ok {
		return 0
	}
	return n + 1
}

func (e *eventCounts) set(k eventKey, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.counts) >= maxAggregated {
		for old := range e.counts { // any one: the map is a bound, not an LRU
			delete(e.counts, old)
			break
		}
	}
	e.counts[k] = n
}

// eventName is the Event's name for (pod, reason): stable, so that a restarted plugin
// finds it, unique per pod instance and reason, and a valid object name.
func eventName(pod PodInfo, reason string) string {
	sum := sha256.Sum256([]byte(pod.UID + "/" + reason))
	suffix := "." + hex.EncodeToString(sum[:8])
	name := pod.Name
	if len(name)+len(suffix) > 253 {
		name = name[:253-len(suffix)]
	}
	return name + suffix
}

// Event implements EventRecorder with a core/v1 Event per (pod, reason): created with
// count 1, then patched with the new count, message and lastTimestamp. Failures are
// logged and otherwise ignored.
func (c *KubeClient) Event(ctx context.Context, pod PodInfo, eventType, reason, message string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	k := eventKey{pod.UID, reason}
	name := eventName(pod, reason)
	path := "/api/v1/namespaces/" + url.PathEscape(pod.Namespace) + "/events"
	now := time.Now().UTC().Format(time.RFC3339)
	err := func() error {
		n := c.events.next(k)
		if n == 0 {
			err := c.do(ctx, http.MethodPost, path, c.newEvent(pod, name, eventType, reason, message, now), nil)
			var ae *apiError
			if !errors.As(err, &ae) || ae.Code != http.StatusConflict {
				if err == nil {
					c.events.set(k, 1)
				}
				return err
			}
			// The Event exists: the plugin restarted. Continue its count.
			var ev struct{ Count int }
			if err := c.do(ctx, http.MethodGet, path+"/"+url.PathEscape(name), nil, &ev); err != nil {
				return err
			}
			n = ev.Count + 1
		}
		patch := map[string]any{"count": n, "lastTimestamp": now, "message": message, "type": eventType}
		err := c.doPatch(ctx, path+"/"+url.PathEscape(name), patch)
		var ae *apiError
		if errors.As(err, &ae) && ae.Code == http.StatusNotFound { // expired (the API server keeps events an hour)
			n = 1
			err = c.do(ctx, http.MethodPost, path, c.newEvent(pod, name, eventType, reason, message, now), nil)
		}
		if err == nil {
			c.events.set(k, n)
		}
		return err
	}()
	if err != nil {
		klog.FromContext(ctx).Error(err, "Cannot record event", "pod", klog.KRef(pod.Namespace, pod.Name), "reason", reason)
	}
}

func (c *KubeClient) newEvent(pod PodInfo, name, eventType, reason, message, now string) map[string]any {
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Event",
		"metadata":   map[string]any{"name": name, "namespace": pod.Namespace},
		"involvedObject": map[string]any{
			"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "namespace": pod.Namespace, "uid": pod.UID,
		},
		"reason":             reason,
		"message":            message,
		"type":               eventType,
		"source":             map[string]any{"component": c.component, "host": c.node},
		"firstTimestamp":     now,
		"lastTimestamp":      now,
		"count":              1,
		"reportingComponent": c.component,
		"reportingInstance":  fmt.Sprintf("%s-%s", c.component, c.node),
	}
}
