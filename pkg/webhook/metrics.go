package webhook

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvinject/kvinject/pkg/policy"
)

// Review outcomes, the values of the outcome label.
const (
	OutcomeInjected  = "injected"
	OutcomeUnchanged = "unchanged"
	OutcomeDenied    = "denied"
	OutcomeError     = "error"
)

// Actions of the policy violation metric.
const (
	ActionDenied  = "denied"
	ActionAudited = "audited"
)

// Metrics are the webhook's Prometheus collectors. Labels never carry pod data.
type Metrics struct {
	reviews          *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	policyViolations *prometheus.CounterVec
	identityChecks   *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg. Registering twice
// with the same registry (two servers in one test process) reuses the first
// collectors.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvinject_webhook_reviews_total",
			Help: "Admission reviews of pods by outcome: injected, unchanged, denied, error.",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvinject_webhook_review_duration_seconds",
			Help:    "Time to handle one admission review, from decoded request to response, by outcome.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"outcome"}),
		policyViolations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvinject_webhook_policy_violations_total",
			Help: "Rules of KeyVaultAccessPolicies that pods broke at admission, by action (denied: Enforce refused the pod; audited: allowed, Audit policies report it) and by the policy field that would allow the value (spec.vaults, ..., policy for an invalid or conflicting policy, unreadable).",
		}, []string{"action", "field"}),
		identityChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvinject_webhook_pod_identity_checks_total",
			Help: "Pods carrying the aadpodidbinding label checked against the KeyVaultAccessPolicies, by outcome: allowed, denied, error.",
		}, []string{"outcome"}),
	}
	var err error
	if m.reviews, err = register(reg, m.reviews); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.policyViolations, err = register(reg, m.policyViolations); err != nil {
		return nil, err
	}
	if m.identityChecks, err = register(reg, m.identityChecks); err != nil {
		return nil, err
	}
	for _, o := range []string{OutcomeInjected, OutcomeUnchanged, OutcomeDenied, OutcomeError} {
		m.reviews.WithLabelValues(o)
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *Metrics) observe(outcome string, d time.Duration) {
	m.reviews.WithLabelValues(outcome).Inc()
	m.duration.WithLabelValues(outcome).Observe(d.Seconds())
}

// observePolicy counts every rule a refusal or an audit report names.
func (m *Metrics) observePolicy(action string, e *policy.Error) {
	for _, v := range e.Violations {
		m.policyViolations.WithLabelValues(action, v.Field).Inc()
	}
}
