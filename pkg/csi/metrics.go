package csi

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	tenancy "github.com/kvinject/kvinject/pkg/policy"
)

// Publish outcomes, the values of the outcome label.
const (
	OutcomePublished     = "published"      // first publish: mounted and written
	OutcomeRefreshed     = "refreshed"      // republish with new content, swapped in
	OutcomeUnchanged     = "unchanged"      // republish, content identical, nothing written
	OutcomeNotDue        = "not_due"        // republish before the volume's refresh is due: no Azure call
	OutcomeRefreshFailed = "refresh_failed" // republish failed; the complete old set is kept
	OutcomeFailed        = "failed"         // the request failed
)

// Metrics are the plugin's Prometheus metrics, on their own registry. Labels never
// carry a secret, a token, a vault or an object name; only outcomes, object types and
// HTTP statuses. The methods are safe for concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	Registry *prometheus.Registry

	publishes       *prometheus.CounterVec
	publishDuration *prometheus.HistogramVec
	unpublishes     *prometheus.CounterVec
	kvRequests      *prometheus.CounterVec
	kvDuration      *prometheus.HistogramVec
	kvBackoff       prometheus.Counter
	policy          *prometheus.CounterVec
	// failing reports the volumes failing to refresh (set by the node server).
	failing atomic.Pointer[func() (int, time.Duration)]
}

// Actions of the policy violation metric.
const (
	ActionDenied  = "denied"
	ActionAudited = "audited"
)

// NewMetrics registers the plugin's metrics, with the Go and process collectors, on a
// new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvinject_csi_node_publish_total",
			Help: "NodePublishVolume calls by outcome (published, refreshed, unchanged, not_due, refresh_failed, failed).",
		}, []string{"outcome"}),
		publishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvinject_csi_node_publish_duration_seconds",
			Help:    "Duration of NodePublishVolume calls by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"outcome"}),
		unpublishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvinject_csi_node_unpublish_total",
			Help: "NodeUnpublishVolume calls by outcome (unpublished, failed).",
		}, []string{"outcome"}),
		kvRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvinject_keyvault_requests_total",
			Help: "HTTP requests to Key Vault, every attempt (challenges and retries included), by object type and status code (\"error\" when there was no answer).",
		}, []string{"object_type", "status"}),
		kvDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvinject_keyvault_request_duration_seconds",
			Help:    "Latency of HTTP requests to Key Vault, by object type.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"object_type"}),
	}
	m.kvBackoff = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kvinject_keyvault_requests_not_sent_total",
		Help: "Key Vault requests not sent because their vault was backing off after a 429, a 5xx or a failed connection.",
	})
	m.policy = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kvinject_csi_node_policy_violations_total",
		Help: "Rules of KeyVaultAccessPolicies that volumes broke, by action (denied: the mount or refresh was refused; audited: allowed, Audit policies report it) and by the policy field that would allow the value.",
	}, []string{"action", "field"})
	failingVolumes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kvinject_csi_node_volumes_refresh_failing",
		Help: "Volumes whose refreshes have failed since their last successful one (they keep their previous files).",
	}, func() float64 { n, _ := m.refreshFailures(); return float64(n) })
	failingLongest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kvinject_csi_node_refresh_failing_seconds",
		Help: "The longest time a volume on this node has been failing to refresh (0 when none is).",
	}, func() float64 { _, d := m.refreshFailures(); return d.Seconds() })
	m.Registry.MustRegister(m.publishes, m.publishDuration, m.unpublishes, m.kvRequests, m.kvDuration, m.kvBackoff, m.policy,
		failingVolumes, failingLongest,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) observePublish(outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.publishes.WithLabelValues(outcome).Inc()
	m.publishDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

// watchRefreshes makes the refresh-failure gauges read failing (the node server's
// schedule).
func (m *Metrics) watchRefreshes(failing func() (int, time.Duration)) {
	if m != nil {
		m.failing.Store(&failing)
	}
}

func (m *Metrics) refreshFailures() (int, time.Duration) {
	if f := m.failing.Load(); f != nil {
		return (*f)()
	}
	return 0, 0
}

// observePolicy counts every rule a refusal or audit report names.
func (m *Metrics) observePolicy(action string, e *tenancy.Error) {
	if m == nil {
		return
	}
	for _, v := range e.Violations {
		m.policy.WithLabelValues(action, v.Field).Inc()
	}
}

// backoffSkip counts a request the node's backoff did not send.
func (m *Metrics) backoffSkip() {
	if m != nil {
		m.kvBackoff.Inc()
	}
}

func (m *Metrics) observeUnpublish(outcome string) {
	if m == nil {
		return
	}
	m.unpublishes.WithLabelValues(outcome).Inc()
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// RequestPolicy returns an azcore per-retry policy counting every Key Vault HTTP
// attempt by object type and status, and timing it.
func (m *Metrics) RequestPolicy() policy.Policy { return requestPolicy{m: m} }

type requestPolicy struct{ m *Metrics }

func (p requestPolicy) Do(req *policy.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := req.Next()
	if p.m == nil {
		return resp, err
	}
	typ := objectTypeOfPath(req.Raw().URL.Path)
	st := "error"
	if resp != nil {
		st = strconv.Itoa(resp.StatusCode)
	}
	p.m.kvRequests.WithLabelValues(typ, st).Inc()
	p.m.kvDuration.WithLabelValues(typ).Observe(time.Since(start).Seconds())
	return resp, err
}

// objectTypeOfPath maps /secrets/..., /keys/..., /certificates/... to a bounded label.
func objectTypeOfPath(p string) string {
	p = strings.TrimPrefix(p, "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		p = p[:i]
	}
	switch p {
	case "secrets", "keys", "certificates":
		return p
	}
	return "other"
}
