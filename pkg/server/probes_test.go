package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
)

// TestAdminHandlerReplaysAppProbes goes through the full admin handler: the
// rewritten probe path answers 200 exactly while the app's own readiness
// endpoint does, other probe paths are 404, and the protected listener does
// not serve probe paths at all.
func TestAdminHandlerReplaysAppProbes(t *testing.T) {
	var healthy atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" && healthy.Load() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer app.Close()
	u, _ := url.Parse(app.URL)
	port, _ := strconv.Atoi(u.Port())

	readiness := probe.Path("mcp", probe.Readiness)
	srv, err := New(context.Background(), bypassConfig(t, app.URL), Options{
		Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel(),
		AppProbes: probe.Set{readiness: {HTTPGet: &probe.HTTPGetAction{Path: "/ready", Port: probe.PortNumber(int32(port))}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	admin := srv.AdminHandler()
	get := func(h http.Handler, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}

	for _, state := range []bool{true, false, true} {
		healthy.Store(state)
		want := http.StatusServiceUnavailable
		if state {
			want = http.StatusOK
		}
		if got := get(admin, readiness); got != want {
			t.Errorf("app healthy=%v: admin %s answered %d, want %d", state, readiness, got, want)
		}
	}
	if got := get(admin, probe.Path("mcp", probe.Liveness)); got != http.StatusNotFound {
		t.Errorf("unregistered probe path: %d, want 404", got)
	}
	if got := get(admin, "/healthz"); got != http.StatusOK {
		t.Errorf("/healthz: %d, want 200 next to the probes", got)
	}

	// On the protected listener a probe path is just another upstream path
	// (here bypass forwards it and the app answers 503 for it): it is never
	// served by the replayer.
	healthy.Store(true)
	if got := get(srv.Handler(), readiness); got == http.StatusOK {
		t.Errorf("protected listener answered %s with 200; probe replay must live on the admin port only", readiness)
	}
}
