package webhook

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts admissions by namespace and result and times them.
type Metrics struct {
	admissions *prometheus.CounterVec
	duration   prometheus.Histogram
}

var _ Observer = (*Metrics)(nil)

// NewMetrics registers the injector's admission metrics on reg (in
// production controller-runtime's metrics.Registry, served on
// --metrics-bind-address).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_oidc_injector_admissions_total",
			Help: "Pod admissions handled by the injector, by namespace and result (injected, skipped, already_injected, denied, error).",
		}, []string{"namespace", "result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mcp_oidc_injector_admission_duration_seconds",
			Help:    "Time the injector spent on one pod admission.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
	}
	var err error
	if m.admissions, err = register(reg, m.admissions); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe implements Observer.
func (m *Metrics) Observe(namespace, result string, d time.Duration) {
	m.admissions.WithLabelValues(namespace, result).Inc()
	m.duration.Observe(d.Seconds())
}

// Admissions returns the admissions counter for (namespace, result); tests
// use it to prove the API server did or did not call the webhook.
func (m *Metrics) Admissions(namespace, result string) prometheus.Counter {
	return m.admissions.WithLabelValues(namespace, result)
}

// register adds c to reg, or returns the identical collector already there:
// a process that restarts its injector (tests) keeps counting on the same
// series instead of failing.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		var zero C
		return zero, fmt.Errorf("registering admission metrics: %w", err)
	}
	return c, nil
}
