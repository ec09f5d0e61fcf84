package server

import (
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/httpjson"
)

// health answers /healthz in the original project's shape. It is a liveness
// signal for the sidecar itself: it stays 200 when the upstream is down
// (restarting the sidecar would not help), and reports upstream reachability
// as information.
type health struct {
	addr    string
	version string
	started time.Time
	now     func() time.Time

	mu      sync.Mutex
	checked time.Time
	up      bool
}

func newHealth(upstream *url.URL, version string, started time.Time, now func() time.Time) *health {
	addr := upstream.Host
	if upstream.Port() == "" {
		port := "80"
		if upstream.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(upstream.Hostname(), port)
	}
	return &health{addr: addr, version: version, started: started, now: now}
}

// upstreamReachable dials the upstream at most once a second, so frequent
// probes do not turn into a connection storm.
func (h *health) upstreamReachable() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := h.now(); now.Sub(h.checked) >= time.Second || h.checked.IsZero() {
		conn, err := net.DialTimeout("tcp", h.addr, 500*time.Millisecond)
		h.up = err == nil
		if conn != nil {
			_ = conn.Close()
		}
		h.checked = now
	}
	return h.up
}

func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up := h.upstreamReachable()
	uptime := h.now().Sub(h.started)
	httpjson.Write(w, http.StatusOK, map[string]any{
		"status":         "healthy",
		"version":        h.version,
		"uptime":         uptime.Round(time.Second).String(),
		"uptime_seconds": int64(uptime.Seconds()),
		"upstream": map[string]any{
			"reachable": up,
		},
	})
}
