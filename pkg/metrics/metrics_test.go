package metrics

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session/sessiontest"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
)

func TestRequestDoneCountsByStatusClassAndRoute(t *testing.T) {
	m := New("v1")
	route := m.Route("mcp")
	for _, code := range []int{200, 204, 404} {
		route.Started()
		route.Done(code, time.Millisecond)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("2xx", "mcp")); got != 2 {
		t.Errorf("2xx count = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("4xx", "mcp")); got != 1 {
		t.Errorf("4xx count = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.inFlight); got != 0 {
		t.Errorf("in flight after requests = %v, want 0", got)
	}
}

type failingStore struct{ session.Store }

func (failingStore) GetSession(context.Context, string) (session.Record, error) {
	return session.Record{}, errors.New("dial tcp: connection refused")
}

func TestInstrumentStoreSeparatesNotFoundFromErrors(t *testing.T) {
	m := New("v1")
	mem := session.NewMemory(session.MemoryOptions{})
	defer mem.Close()
	st := m.InstrumentStore(mem)
	ctx := context.Background()
	_, _ = st.GetSession(ctx, "missing")
	_ = st.PutOnce(ctx, "k", []byte("v"), time.Minute)
	_, _ = st.TakeOnce(ctx, "k")
	_, _ = m.InstrumentStore(failingStore{mem}).GetSession(ctx, "x")

	cases := map[[2]string]float64{
		{"get", "not_found"}: 1, {"put_once", "ok"}: 1, {"take_once", "ok"}: 1, {"get", "error"}: 1,
	}
	for labels, want := range cases {
		if got := testutil.ToFloat64(m.storeOps.WithLabelValues(labels[0], labels[1])); got != want {
			t.Errorf("store ops %v = %v, want %v", labels, got, want)
		}
	}
	if got := testutil.ToFloat64(m.storeErrors.WithLabelValues("get")); got != 1 {
		t.Errorf("store errors = %v, want 1 (not_found is not an error)", got)
	}
}

// The instrumented store is what every consumer talks to, so it must keep
// every rule of the store it wraps: the conformance suite runs through it,
// against both backends, and every operation it makes is counted.
func TestInstrumentedStoreConformance(t *testing.T) {
	srv := redisserver.Start(t)
	tests := []struct {
		name    string
		backend func(t *testing.T) session.Store
	}{
		{"memory", func(t *testing.T) session.Store {
			mem := session.NewMemory(session.MemoryOptions{})
			t.Cleanup(func() { _ = mem.Close() })
			return mem
		}},
		{"redis", func(t *testing.T) session.Store {
			prefix := make([]byte, 6)
			_, _ = rand.Read(prefix)
			rs, err := session.NewRedis(session.RedisOptions{URL: srv.URL(), KeyPrefix: "instrumented-" + hex.EncodeToString(prefix) + ":"})
			if err != nil {
				t.Fatalf("NewRedis: %v", err)
			}
			t.Cleanup(func() { _ = rs.Close() })
			return rs
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New("v1")
			// t.Run returns once the suite's parallel subtests are done.
			t.Run("suite", func(t *testing.T) {
				sessiontest.Run(t, func(t *testing.T) session.Store { return m.InstrumentStore(tt.backend(t)) })
			})
			for _, op := range []string{"create", "get", "update", "delete", "put", "get_value", "delete_value", "exists", "put_once", "take_once", "lock"} {
				if testutil.ToFloat64(m.storeOps.WithLabelValues(op, "ok")) == 0 {
					t.Errorf("no successful %q counted while the suite ran through the decorator", op)
				}
			}
			if got := testutil.ToFloat64(m.storeOps.WithLabelValues("lock", "held")); got == 0 {
				t.Error("no held lock counted while the suite ran through the decorator")
			}
		})
	}
}

func TestHandlerExposesNamesWithoutMilliseconds(t *testing.T) {
	m := New("v1")
	m.BreakerStateChanged("open")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`mcp_oidc_proxy_upstream_breaker_state{state="open"} 1`, `mcp_oidc_proxy_build_info{version="v1"} 1`, "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics output lacks %q", want)
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "mcp_oidc_proxy_") && (strings.Contains(line, "_ms") || strings.Contains(line, "milli")) {
			t.Errorf("metric names must use seconds: %s", line)
		}
	}
}

// The gauge follows the state names the proxy really reports, including
// "half-open", and exactly one state reads 1 at any time.
func TestBreakerStateFollowsTheProxysStateNames(t *testing.T) {
	var _ proxy.Observer = (*Metrics)(nil)
	tests := []struct {
		state string
		label string
	}{
		{proxy.BreakerOpen, "open"},
		{proxy.BreakerHalfOpen, "half_open"},
		{proxy.BreakerClosed, "closed"},
	}
	m := New("v1")
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			m.BreakerStateChanged(tt.state)
			for _, l := range []string{"closed", "half_open", "open"} {
				want := 0.0
				if l == tt.label {
					want = 1
				}
				if got := testutil.ToFloat64(m.breakerState.WithLabelValues(l)); got != want {
					t.Errorf("after %q: state=%q gauge = %v, want %v", tt.state, l, got, want)
				}
			}
		})
	}
}

func TestCacheCounters(t *testing.T) {
	m := New("v1")
	m.SessionCacheLookup(true)
	m.SessionCacheLookup(true)
	m.SessionCacheLookup(false)
	m.CacheInvalidation("session", "message")
	m.CacheInvalidation("revoked", "reload")
	cases := []struct {
		name string
		got  float64
		want float64
	}{
		{"hits", testutil.ToFloat64(m.cacheLookups.WithLabelValues("hit")), 2},
		{"misses", testutil.ToFloat64(m.cacheLookups.WithLabelValues("miss")), 1},
		{"session messages", testutil.ToFloat64(m.invalidations.WithLabelValues("session", "message")), 1},
		{"revoked reloads", testutil.ToFloat64(m.invalidations.WithLabelValues("revoked", "reload")), 1},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
