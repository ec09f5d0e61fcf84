// Package metrics defines the sidecar's Prometheus metrics and the small
// adapters that let other packages report into them without importing
// Prometheus themselves.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

const namespace = "mcp_oidc_proxy"

// Metrics owns a private registry (no global state), so tests and several
// servers in one process do not collide.
type Metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	openStreams  prometheus.Gauge
	authOutcomes *prometheus.CounterVec
	storeOps     *prometheus.CounterVec
	storeErrors  *prometheus.CounterVec
	upstreamErrs *prometheus.CounterVec
	breakerState *prometheus.GaugeVec
	reloads      *prometheus.CounterVec
	tlsReloads   *prometheus.CounterVec
	buildInfo    *prometheus.GaugeVec
	// Local caches (pkg/sessioncache, the revoked set in pkg/oauth).
	cacheLookups  *prometheus.CounterVec
	cacheHit      prometheus.Counter
	cacheMiss     prometheus.Counter
	invalidations *prometheus.CounterVec
	// MCP JSON-RPC requests (the audit trail's counter).
	mcpRequests *MCPRequests
	// MCP session requests sent to (or refused for) their owning replica.
	sessionHops *prometheus.CounterVec
}

// New registers every metric on a fresh registry.
func New(version string, opts ...Option) *Metrics {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), mcpRequests: newMCPRequests(o.mcpToolLabel)}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "http_requests_total",
		Help: "Requests served, by status class (2xx..5xx) and route kind (mcp, public, login, session, oauth, bypass).",
	}, []string{"code_class", "route"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "http_request_duration_seconds",
		Help:    "Time to the end of the response, by route kind. Streams count until they close.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "http_requests_in_flight", Help: "Requests being served now.",
	})
	m.openStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "open_streams", Help: "Server-sent event streams held open through the proxy.",
	})
	m.authOutcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "auth_total",
		Help: "Authentication decisions by method (cookie, bearer, bypass, login) and outcome.",
	}, []string{"method", "outcome"})
	m.storeOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "session_store_operations_total",
		Help: "Session store operations by operation and result (ok, not_found, error).",
	}, []string{"operation", "result"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "session_store_errors_total",
		Help: "Session store operations that failed for a reason other than a missing key (e.g. Redis unreachable).",
	}, []string{"operation"})
	m.upstreamErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "upstream_errors_total",
		Help: "Failed forwards to the MCP server, by kind (connect, timeout, circuit_open, client_canceled, other).",
	}, []string{"kind"})
	m.breakerState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "upstream_breaker_state",
		Help: "1 for the circuit breaker's current state (closed, half_open, open), 0 for the others.",
	}, []string{"state"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total", Help: "Configuration reloads by result (applied, unchanged, refused).",
	}, []string{"result"})
	m.tlsReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "tls_certificate_reloads_total",
		Help: "Reloads of the proxy's own TLS certificate after its files changed, by result (applied, refused: the running certificate is kept).",
	}, []string{"result"})
	m.buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info", Help: "Always 1; the version label says which build runs.",
	}, []string{"version"})
	m.cacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "session_cache_lookups_total",
		Help: "Session reads by result: hit (served from the local cache) or miss (read from the store).",
	}, []string{"result"})
	m.cacheHit, m.cacheMiss = m.cacheLookups.WithLabelValues("hit"), m.cacheLookups.WithLabelValues("miss")
	m.invalidations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_invalidations_total",
		Help: "Invalidations received by a local cache (session, revoked): message (one entry from another replica) or flush/reload (all of it, after the subscription broke or came back, or the periodic reload).",
	}, []string{"cache", "kind"})
	m.sessionHops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "mcp_session_hops_total",
		Help: "Requests of an MCP session (Mcp-Session-Id) that this replica does not own, by result: forwarded (one hop to the owner), owner_gone (404), replayed (initialize replayed here), refused (an id that does not open, belongs to another user or arrived on a second hop).",
	}, []string{"result"})
	m.reg.MustRegister(m.requests, m.duration, m.inFlight, m.openStreams, m.authOutcomes,
		m.storeOps, m.storeErrors, m.upstreamErrs, m.breakerState, m.reloads, m.tlsReloads, m.buildInfo,
		m.cacheLookups, m.invalidations, m.mcpRequests.vec, m.sessionHops,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.buildInfo.WithLabelValues(version).Set(1)
	m.BreakerStateChanged("closed")
	return m
}

// Hop counts one MCP session request by the result of routing it to its
// replica (pkg/mcpsession.Observer).
func (m *Metrics) Hop(result string) { m.sessionHops.WithLabelValues(result).Inc() }

// Registry exposes the registry for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Route is the request series of one route kind, resolved once so that
// recording a request does no label lookups on the hot path.
type Route struct {
	inFlight prometheus.Gauge
	duration prometheus.Observer
	// byClass[n] counts responses with status n00..n99 (index 0 is unused).
	byClass [6]prometheus.Counter
}

// Route returns the series for route.
func (m *Metrics) Route(route string) *Route {
	r := &Route{inFlight: m.inFlight, duration: m.duration.WithLabelValues(route)}
	for class := 1; class < len(r.byClass); class++ {
		r.byClass[class] = m.requests.WithLabelValues(strconv.Itoa(class)+"xx", route)
	}
	return r
}

// Started counts a request in flight; pair it with Done.
func (r *Route) Started() { r.inFlight.Inc() }

// Done records a finished request with its status and duration.
func (r *Route) Done(status int, d time.Duration) {
	r.inFlight.Dec()
	r.duration.Observe(d.Seconds())
	if class := status / 100; class >= 1 && class < len(r.byClass) {
		r.byClass[class].Inc()
	}
}

// AuthOutcome implements the authentication layer's observer.
func (m *Metrics) AuthOutcome(method, outcome string) {
	m.authOutcomes.WithLabelValues(method, outcome).Inc()
}

// LoginOutcome implements the authentication layer's observer.
func (m *Metrics) LoginOutcome(outcome string) {
	m.authOutcomes.WithLabelValues("login", outcome).Inc()
}

// RefreshOutcome implements the authentication layer's observer.
func (m *Metrics) RefreshOutcome(outcome string) {
	m.authOutcomes.WithLabelValues("refresh", outcome).Inc()
}

// UpstreamError implements the proxy's observer.
func (m *Metrics) UpstreamError(kind string) { m.upstreamErrs.WithLabelValues(kind).Inc() }

// BreakerStateChanged implements the proxy's observer. The proxy names the
// middle state "half-open"; the label is "half_open", the spelling
// Prometheus users expect, so the name is folded before matching (without
// that, every state gauge read 0 while the breaker was half-open).
func (m *Metrics) BreakerStateChanged(state string) {
	state = strings.ReplaceAll(state, "-", "_")
	for _, s := range []string{"closed", "half_open", "open"} {
		v := 0.0
		if s == state {
			v = 1
		}
		m.breakerState.WithLabelValues(s).Set(v)
	}
}

// StreamOpened implements the proxy's observer.
func (m *Metrics) StreamOpened() { m.openStreams.Inc() }

// StreamClosed implements the proxy's observer.
func (m *Metrics) StreamClosed() { m.openStreams.Dec() }

// ConfigReload counts a reload attempt.
func (m *Metrics) ConfigReload(result string) { m.reloads.WithLabelValues(result).Inc() }

// TLSCertificateReload counts a reload of the proxy's own TLS certificate
// (pkg/certreload's observer).
func (m *Metrics) TLSCertificateReload(result string) { m.tlsReloads.WithLabelValues(result).Inc() }

// SessionCacheLookup implements the session cache's observer.
func (m *Metrics) SessionCacheLookup(hit bool) {
	if hit {
		m.cacheHit.Inc()
	} else {
		m.cacheMiss.Inc()
	}
}

// CacheInvalidation implements the local caches' observer.
func (m *Metrics) CacheInvalidation(cache, kind string) {
	m.invalidations.WithLabelValues(cache, kind).Inc()
}

// InstrumentStore wraps a session store so every operation is counted. It
// decorates each narrow interface of session.Store on its own (sessions,
// values, single-use values, locks), so a consumer holding only one of them
// is counted the same way; Ping and Close pass through.
func (m *Metrics) InstrumentStore(s session.Store) session.Store {
	obs := storeObserver{m: m}
	return instrumentedStore{
		Sessions:  instrumentedSessions{next: s, obs: obs},
		Values:    instrumentedValues{next: s, obs: obs},
		SingleUse: instrumentedSingleUse{next: s, obs: obs},
		Locker:    instrumentedLocker{next: s, obs: obs},
		lifecycle: s,
	}
}

// lifecycle is the part of session.Store that is not counted.
type lifecycle interface {
	Ping(ctx context.Context) error
	Close() error
}

type instrumentedStore struct {
	session.Sessions
	session.Values
	session.SingleUse
	session.Locker
	lifecycle
}

var _ session.Store = instrumentedStore{}

// storeObserver counts one store operation by its outcome.
type storeObserver struct{ m *Metrics }

func (o storeObserver) observe(op string, err error) {
	switch {
	case err == nil:
		o.m.storeOps.WithLabelValues(op, "ok").Inc()
	case isNotFound(err):
		o.m.storeOps.WithLabelValues(op, "not_found").Inc()
	default:
		o.m.storeOps.WithLabelValues(op, "error").Inc()
		o.m.storeErrors.WithLabelValues(op).Inc()
	}
}

type instrumentedSessions struct {
	next session.Sessions
	obs  storeObserver
}

func (s instrumentedSessions) CreateSession(ctx context.Context, rec session.Record, l session.Limit) ([]string, error) {
	ev, err := s.next.CreateSession(ctx, rec, l)
	s.obs.observe("create", err)
	return ev, err
}

func (s instrumentedSessions) GetSession(ctx context.Context, id string) (session.Record, error) {
	rec, err := s.next.GetSession(ctx, id)
	s.obs.observe("get", err)
	return rec, err
}

func (s instrumentedSessions) UpdateSession(ctx context.Context, rec session.Record) error {
	err := s.next.UpdateSession(ctx, rec)
	s.obs.observe("update", err)
	return err
}

func (s instrumentedSessions) DeleteSession(ctx context.Context, id string) error {
	err := s.next.DeleteSession(ctx, id)
	s.obs.observe("delete", err)
	return err
}

type instrumentedValues struct {
	next session.Values
	obs  storeObserver
}

func (s instrumentedValues) Put(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	err := s.next.Put(ctx, key, v, ttl)
	s.obs.observe("put", err)
	return err
}

func (s instrumentedValues) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.next.Get(ctx, key)
	s.obs.observe("get_value", err)
	return v, err
}

func (s instrumentedValues) Delete(ctx context.Context, key string) error {
	err := s.next.Delete(ctx, key)
	s.obs.observe("delete_value", err)
	return err
}

func (s instrumentedValues) AnyExists(ctx context.Context, keys ...string) (bool, error) {
	ok, err := s.next.AnyExists(ctx, keys...)
	s.obs.observe("exists", err)
	return ok, err
}

type instrumentedSingleUse struct {
	next session.SingleUse
	obs  storeObserver
}

func (s instrumentedSingleUse) PutOnce(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	err := s.next.PutOnce(ctx, key, v, ttl)
	s.obs.observe("put_once", err)
	return err
}

func (s instrumentedSingleUse) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	v, err := s.next.TakeOnce(ctx, key)
	s.obs.observe("take_once", err)
	return v, err
}

type instrumentedLocker struct {
	next session.Locker
	obs  storeObserver
}

// TryLock counts a lock held elsewhere as "held", not as an error: it is
// the expected outcome when another replica is refreshing the same session.
func (s instrumentedLocker) TryLock(ctx context.Context, name string, ttl time.Duration) (session.Lock, error) {
	l, err := s.next.TryLock(ctx, name, ttl)
	if isLocked(err) {
		s.obs.m.storeOps.WithLabelValues("lock", "held").Inc()
	} else {
		s.obs.observe("lock", err)
	}
	return l, err
}
