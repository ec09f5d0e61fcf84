package probereplay_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probereplay"
)

// ask sends the kubelet's GET for path to the replayer and returns the
// status and body.
func ask(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("User-Agent", "kube-probe/1.36")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func portOf(t *testing.T, rawURL string) int32 {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// httpApp is an app whose health endpoints answer what the test says.
type httpApp struct {
	status    atomic.Int32 // answer of /healthz
	location  atomic.Value // redirect target of /healthz for 3xx
	gotUA     atomic.Value
	gotHeader atomic.Value
	gotHost   atomic.Value
}

func (a *httpApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		a.gotUA.Store(r.Header.Get("User-Agent"))
		a.gotHeader.Store(r.Header.Get("X-Probe"))
		a.gotHost.Store(r.Host)
		code := int(a.status.Load())
		if code >= 300 && code < 400 {
			w.Header().Set("Location", a.location.Load().(string))
		}
		w.WriteHeader(code)
	case "/ok":
		w.WriteHeader(http.StatusOK)
	case "/broken":
		w.WriteHeader(http.StatusInternalServerError)
	case "/slow":
		<-r.Context().Done()
	}
}

// TestHTTPReplayMatchesTheAppsOwnProbe toggles one app through states and
// checks that the rewritten probe succeeds exactly when the original
// (kubelet semantics: 200-399 after same-host redirects) would.
func TestHTTPReplayMatchesTheAppsOwnProbe(t *testing.T) {
	for _, tls := range []bool{false, true} {
		name := "http"
		if tls {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			app := &httpApp{}
			app.location.Store("/ok")
			srv := httptest.NewUnstartedServer(app)
			scheme := "HTTP"
			if tls {
				srv.StartTLS()
				scheme = "HTTPS"
			} else {
				srv.Start()
			}
			defer srv.Close()
			path := probe.Path("app", probe.Readiness)
			rp := probereplay.NewReplayer(probe.Set{path: {HTTPGet: &probe.HTTPGetAction{
				Path: "/healthz", Port: probe.PortNumber(portOf(t, srv.URL)), Scheme: scheme,
				HTTPHeaders: []probe.HTTPHeader{{Name: "X-Probe", Value: "yes"}, {Name: "Host", Value: "app.example"}},
			}}}, probereplay.Options{Logger: zaptest.NewLogger(t)})

			states := []struct {
				name     string
				status   int
				location string
				healthy  bool
			}{
				{"200", 200, "", true},
				{"204", 204, "", true},
				{"500", 500, "", false},
				{"404", 404, "", false},
				{"399 is still success", 399, "/ok", true},
				{"redirect to a healthy path on the same host", 302, "/ok", true},
				{"redirect to a failing path on the same host", 302, "/broken", false},
				{"redirect to another host counts as success", 302, "http://other.invalid/", true},
				{"back to healthy", 200, "", true},
			}
			for _, st := range states {
				app.status.Store(int32(st.status))
				app.location.Store(st.location)
				code, body := ask(t, rp, http.MethodGet, path)
				wantCode := http.StatusServiceUnavailable
				if st.healthy {
					wantCode = http.StatusOK
				}
				if code != wantCode {
					t.Errorf("%s: replayer answered %d (%q), want %d", st.name, code, body, wantCode)
				}
			}
			if ua := app.gotUA.Load(); ua != "kube-probe/1.36" {
				t.Errorf("app saw User-Agent %q, want the kubelet's", ua)
			}
			if h := app.gotHeader.Load(); h != "yes" {
				t.Errorf("app saw X-Probe %q, want the probe's header", h)
			}
			if h := app.gotHost.Load(); h != "app.example" {
				t.Errorf("app saw Host %q, want the probe's Host header", h)
			}
		})
	}
}

func TestHTTPReplayHonoursTheProbeTimeout(t *testing.T) {
	srv := httptest.NewServer(&httpApp{})
	defer srv.Close()
	path := probe.Path("app", probe.Liveness)
	rp := probereplay.NewReplayer(probe.Set{path: {
		HTTPGet:        &probe.HTTPGetAction{Path: "/slow", Port: probe.PortNumber(portOf(t, srv.URL))},
		TimeoutSeconds: 1,
	}}, probereplay.Options{})
	code, body := ask(t, rp, http.MethodGet, path)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "deadline") {
		t.Fatalf("slow app: %d %q, want 503 naming the deadline", code, body)
	}
}

func TestTCPReplayMatchesTheAppsOwnProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	path := probe.Path("app", probe.Startup)
	rp := probereplay.NewReplayer(probe.Set{path: {TCPSocket: &probe.TCPSocketAction{Port: probe.PortNumber(port)}}},
		probereplay.Options{})

	states := []struct {
		name    string
		toggle  func()
		healthy bool
	}{
		{"listening", func() {}, true},
		{"closed", func() { _ = ln.Close() }, false},
	}
	for _, st := range states {
		st.toggle()
		code, body := ask(t, rp, http.MethodGet, path)
		if (code == http.StatusOK) != st.healthy || (code != http.StatusOK && code != http.StatusServiceUnavailable) {
			t.Errorf("%s: replayer answered %d (%q), healthy=%v", st.name, code, body, st.healthy)
		}
	}
}

func TestGRPCReplayMatchesTheAppsOwnProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	port := int32(ln.Addr().(*net.TCPAddr).Port)

	// An app without the health service.
	bare, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bs := grpc.NewServer()
	go func() { _ = bs.Serve(bare) }()
	defer bs.Stop()

	svc := "mcp"
	unknown := "nope"
	set := probe.Set{
		"/app-probes/app/liveness":  {GRPC: &probe.GRPCAction{Port: port}},
		"/app-probes/app/readiness": {GRPC: &probe.GRPCAction{Port: port, Service: &svc}},
		"/app-probes/app/startup":   {GRPC: &probe.GRPCAction{Port: port, Service: &unknown}},
		"/app-probes/bare/liveness": {GRPC: &probe.GRPCAction{Port: int32(bare.Addr().(*net.TCPAddr).Port)}},
	}
	rp := probereplay.NewReplayer(set, probereplay.Options{Logger: zaptest.NewLogger(t)})

	states := []struct {
		name    string
		service string
		status  healthpb.HealthCheckResponse_ServingStatus
		path    string
		healthy bool
		reason  string
	}{
		{"named service serving", svc, healthpb.HealthCheckResponse_SERVING, "/app-probes/app/readiness", true, ""},
		{"named service not serving", svc, healthpb.HealthCheckResponse_NOT_SERVING, "/app-probes/app/readiness", false, "NOT_SERVING"},
		{"named service back", svc, healthpb.HealthCheckResponse_SERVING, "/app-probes/app/readiness", true, ""},
		{"overall server serving", "", healthpb.HealthCheckResponse_SERVING, "/app-probes/app/liveness", true, ""},
		{"overall server not serving", "", healthpb.HealthCheckResponse_NOT_SERVING, "/app-probes/app/liveness", false, "NOT_SERVING"},
		{"unknown service", "", healthpb.HealthCheckResponse_NOT_SERVING, "/app-probes/app/startup", false, "NotFound"},
		{"no health service", "", healthpb.HealthCheckResponse_NOT_SERVING, "/app-probes/bare/liveness", false, "does not implement"},
	}
	for _, st := range states {
		hs.SetServingStatus(st.service, st.status)
		code, body := ask(t, rp, http.MethodGet, st.path)
		wantCode := http.StatusServiceUnavailable
		if st.healthy {
			wantCode = http.StatusOK
		}
		if code != wantCode || !strings.Contains(body, st.reason) {
			t.Errorf("%s: replayer answered %d (%q), want %d containing %q", st.name, code, body, wantCode, st.reason)
		}
	}

	gs.Stop()
	if code, body := ask(t, rp, http.MethodGet, "/app-probes/app/liveness"); code != http.StatusServiceUnavailable {
		t.Errorf("stopped gRPC server: %d (%q), want 503", code, body)
	}
}

func TestReplayerServesOnlyItsPathsOnGET(t *testing.T) {
	app := httptest.NewServer(&httpApp{})
	defer app.Close()
	path := probe.Path("app", probe.Liveness)
	rp := probereplay.NewReplayer(probe.Set{
		path:                         {HTTPGet: &probe.HTTPGetAction{Path: "/ok", Port: probe.PortNumber(portOf(t, app.URL))}},
		"/app-probes/named/liveness": {HTTPGet: &probe.HTTPGetAction{Path: "/ok", Port: probe.Port{Name: "http"}}},
		"/app-probes/zero/liveness":  {TCPSocket: &probe.TCPSocketAction{Port: probe.PortNumber(0)}},
		"/app-probes/ftp/liveness":   {HTTPGet: &probe.HTTPGetAction{Port: probe.PortNumber(portOf(t, app.URL)), Scheme: "FTP"}},
	}, probereplay.Options{})
	tests := []struct {
		method, path string
		want         int
		body         string
	}{
		{http.MethodGet, path, http.StatusOK, "ok"},
		{http.MethodGet, path + "/", http.StatusNotFound, ""},
		{http.MethodGet, probe.Path("app", probe.Readiness), http.StatusNotFound, ""},
		{http.MethodGet, probe.PathPrefix, http.StatusNotFound, ""},
		{http.MethodPost, path, http.StatusMethodNotAllowed, ""},
		{http.MethodGet, "/app-probes/named/liveness", http.StatusServiceUnavailable, "not resolved"},
		{http.MethodGet, "/app-probes/zero/liveness", http.StatusServiceUnavailable, "not in 1-65535"},
		{http.MethodGet, "/app-probes/ftp/liveness", http.StatusServiceUnavailable, "unsupported scheme"},
	}
	for _, tt := range tests {
		code, body := ask(t, rp, tt.method, tt.path)
		if code != tt.want || !strings.Contains(body, tt.body) {
			t.Errorf("%s %s: %d %q, want %d containing %q", tt.method, tt.path, code, body, tt.want, tt.body)
		}
	}
}

// TestReplayNeverLeavesLoopback checks that a probe path written as an
// absolute URL cannot send the replay to another host.
func TestReplayNeverLeavesLoopback(t *testing.T) {
	var hits atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "local")
	}))
	defer app.Close()
	path := probe.Path("app", probe.Liveness)
	rp := probereplay.NewReplayer(probe.Set{path: {HTTPGet: &probe.HTTPGetAction{
		Host: "other.invalid", Path: "http://other.invalid:1/x", Port: probe.PortNumber(portOf(t, app.URL)),
	}}}, probereplay.Options{})
	if code, body := ask(t, rp, http.MethodGet, path); code != http.StatusOK || hits.Load() != 1 {
		t.Fatalf("replay answered %d (%q) with %d local hits, want 200 from the app on 127.0.0.1", code, body, hits.Load())
	}
}
