package webhook

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Review outcomes, the values of the outcome label.
const (
	OutcomeInjected  = "injected"
	OutcomeUnchanged = "unchanged"
	OutcomeDenied    = "denied"
	OutcomeError     = "error"
)

// Metrics are the webhook's Prometheus collectors. Labels never carry pod data.
type Metrics struct {
	reviews  *prometheus.CounterVec
	duration *prometheus.HistogramVec
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
	}
	var err error
	if m.reviews, err = register(reg, m.reviews); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
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
