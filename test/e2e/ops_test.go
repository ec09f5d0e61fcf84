package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// A whole session (login, MCP calls that each refresh the tokens, a request
// carrying a bearer token, logout) at debug level never writes a cookie,
// token, code, state or secret into the logs.
func TestNoSecretIsLogged(t *testing.T) {
	const redisPassword = "e2e-redis-password-5b1c9f0e"
	const clientBearer = "e2e-client-bearer-7f3a9c2d41"
	e := newEnv(t, envOptions{redis: true, redisOpts: []redisserver.Option{redisserver.WithPassword(redisPassword)}})
	rec := newTokenRecorder()
	// Tokens live 5m; refreshing 10m before expiry refreshes on every request.
	p := e.start(t, proxyOptions{httpClient: rec.client(), args: []string{"--session-refresh-before", "10m", "--oidc-scopes", offlineScopes}})

	res := login(t, e.idp, p.URL, p.URL, "/")
	cs := mcpSession(t, p.URL, res.Cookie, nil)
	assertDemoIdentity(t, whoami(t, cs))
	_ = cs.Close()
	// A bearer token, even next to a valid cookie, is validated (and this
	// one is rejected) — and never logged.
	if r := do(t, http.MethodGet, p.URL+"/headers", res.Cookie, http.Header{"Authorization": {"Bearer " + clientBearer}}); r.Status != http.StatusUnauthorized || strings.Contains(string(r.Body), clientBearer) {
		t.Fatalf("GET /headers with a forged bearer = %s, want 401 without echoing the bearer", r)
	}
	if r := do(t, http.MethodPost, p.URL+"/oauth2/logout", res.Cookie, nil); r.Status != http.StatusOK {
		t.Fatalf("logout = %s", r)
	}
	if n := e.idp.RefreshRequests(); n == 0 {
		t.Fatal("no refresh happened; the test would not cover refresh logging")
	}

	secrets := rec.all()
	secrets[res.Cookie.Value] = "session cookie"
	value, ok := strings.CutPrefix(res.Cookie.Value, "v1.")
	if !ok {
		t.Fatalf("cookie %q has no v1. prefix", res.Cookie.Value)
	}
	secrets[value] = "session cookie without version"
	for part := range strings.SplitSeq(value, ".") {
		if len(part) >= 8 {
			secrets[part] = "session cookie part"
		}
	}
	secrets[res.Callback.Query().Get("code")] = "authorization code"
	secrets[res.Callback.Query().Get("state")] = "OAuth state"
	secrets[oidcprovider.DefaultClientSecret] = "client secret"
	secrets[cookieSecret] = "cookie secret"
	secrets[redisPassword] = "Redis password"
	secrets[clientBearer] = "client Authorization header"
	for _, want := range []string{"access token", "refresh token", "ID token", "Authorization header to the provider"} {
		found := false
		for _, what := range secrets {
			found = found || what == want
		}
		if !found {
			t.Errorf("the recorder captured no %s", want)
		}
	}

	logs := p.Logs.String()
	if !strings.Contains(logs, `"msg":"login"`) || !strings.Contains(logs, `"msg":"request"`) {
		t.Fatalf("logs lack the login and request lines; is debug logging on?\n%s", logs)
	}
	for v, what := range secrets {
		if strings.Contains(logs, v) {
			t.Errorf("the logs contain the %s", what)
		}
	}
}

// SIGTERM (cancelling Serve's context) stops accepting connections at once
// but lets an open stream finish within the grace period; Serve returns nil.
func TestShutdownDrainsOpenStreams(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.start(t, proxyOptions{})
	res := login(t, e.idp, p.URL, p.URL, "/")

	req, err := http.NewRequest(http.MethodGet, p.URL+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.AddCookie(res.Cookie)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stream = %d", resp.StatusCode)
	}
	lines := bufio.NewReader(resp.Body)
	if line, err := lines.ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first event = %q, %v", line, err)
	}
	<-e.up.opened

	p.Shutdown() // what SIGTERM does
	addr := strings.TrimPrefix(p.URL, "http://")
	waitfor.True(t, waitFor, "the proxy to stop accepting connections after shutdown began", func() bool {
		select {
		case <-p.Done():
			t.Fatal("Serve returned while a stream was still open")
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		_ = conn.Close()
		return false
	})
	select {
	case <-p.Done():
		t.Fatalf("Serve returned (%v) while a stream was still open", p.Stop())
	default:
	}

	close(e.up.release)
	rest, err := io.ReadAll(lines)
	if err != nil {
		t.Fatalf("the stream broke during shutdown: %v", err)
	}
	if !strings.Contains(string(rest), "data: last") {
		t.Fatalf("rest of the stream = %q, want the last event", rest)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
}

// The admin listener reports health, readiness and metrics; the protected
// listener does not serve them.
func TestAdminListener(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.start(t, proxyOptions{})
	res := login(t, e.idp, p.URL, p.URL, "/")
	if r := do(t, http.MethodGet, p.URL+"/headers", res.Cookie, nil); r.Status != http.StatusOK {
		t.Fatalf("GET /headers = %s", r)
	}

	type healthz struct {
		Status   string `json:"status"`
		Version  string `json:"version"`
		Uptime   string `json:"uptime"`
		Upstream struct {
			Reachable *bool `json:"reachable"`
		} `json:"upstream"`
	}
	health := func() healthz {
		t.Helper()
		r := do(t, http.MethodGet, p.Admin+"/healthz", nil, nil)
		var h healthz
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &h) != nil {
			t.Fatalf("/healthz = %s, want 200 JSON", r)
		}
		if h.Status == "" || h.Version != version || h.Uptime == "" || h.Upstream.Reachable == nil {
			t.Fatalf("/healthz = %s, want status, version %q, uptime and upstream.reachable", r.Body, version)
		}
		return h
	}
	if h := health(); !*h.Upstream.Reachable {
		t.Errorf("upstream.reachable = false with the upstream running")
	}
	if r := do(t, http.MethodGet, p.Admin+"/readyz", nil, nil); r.Status != http.StatusOK {
		t.Errorf("/readyz = %s, want 200", r)
	}
	m := do(t, http.MethodGet, p.Admin+"/metrics", nil, nil)
	for _, name := range []string{"mcp_oidc_proxy_http_requests_total", "mcp_oidc_proxy_auth_total", "mcp_oidc_proxy_session_store_operations_total"} {
		if !strings.Contains(string(m.Body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		r := do(t, http.MethodGet, p.URL+path, nil, http.Header{"Accept": {"application/json"}})
		if r.Status != http.StatusUnauthorized {
			t.Errorf("protected %s without a session = %s, want 401", path, r)
		}
		r = do(t, http.MethodGet, p.URL+path, res.Cookie, nil)
		if strings.Contains(string(r.Body), "mcp_oidc_proxy_") || strings.Contains(string(r.Body), `"ready"`) || strings.Contains(string(r.Body), `"uptime"`) {
			t.Errorf("protected %s served the admin endpoint: %s", path, r)
		}
	}

	e.up.Stop()
	waitfor.True(t, waitFor, "upstream.reachable to turn false after the upstream stopped", func() bool {
		return !*health().Upstream.Reachable
	})
}

// A replica whose provider cannot be discovered is alive but not ready.
func TestNotReadyWithoutProvider(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	_ = l.Close()
	e := newEnv(t, envOptions{})
	p := e.start(t, proxyOptions{discoveryURL: closed, noWait: true})
	waitStatus(t, p.Admin+"/healthz", http.StatusOK)
	if r := do(t, http.MethodGet, p.Admin+"/readyz", nil, nil); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without a reachable provider = %s, want 503", r)
	}
}

// Bypass needs an explicit acknowledgement; with it every request reaches
// the upstream as the development identity and is logged as a warning.
func TestBypassMode(t *testing.T) {
	e := newEnv(t, envOptions{})
	loaded, err := config.Load(config.Source{Args: []string{"--auth-mode", "bypass", "--upstream", e.up.URL}})
	if err != nil {
		t.Fatal(err)
	}
	err = loaded.Config.Validate()
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Path != "auth_mode" {
		t.Fatalf("Validate without allow_insecure_bypass = %v, want a FieldError for auth_mode", err)
	}

	p := e.start(t, proxyOptions{args: []string{"--auth-mode", "bypass", "--allow-insecure-bypass"}})
	const requests = 3
	for range requests {
		r := do(t, http.MethodGet, p.URL+"/headers", nil, http.Header{"X-Forwarded-User": {"admin"}})
		var seen http.Header
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &seen) != nil {
			t.Fatalf("GET /headers in bypass mode = %s", r)
		}
		if got := seen.Get("X-Forwarded-User"); got != "bypass-user" {
			t.Fatalf("X-Forwarded-User = %q, want bypass-user", got)
		}
	}
	warnings := 0
	for _, entry := range p.Logs.entries(t) {
		if entry["level"] == "warn" && entry["path"] == "/headers" && strings.Contains(strings.ToLower(entry["msg"].(string)), "bypass") {
			warnings++
		}
	}
	if warnings != requests {
		t.Fatalf("%d bypass warnings for %d requests, want one per request", warnings, requests)
	}
}

// Reloadable settings take effect on the running server without a restart.
func TestReloadAppliesHeadersAuthzAndPublicPaths(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.start(t, proxyOptions{})
	res := login(t, e.idp, p.URL, p.URL, "/")
	assertDemoIdentity(t, whoami(t, mcpSession(t, p.URL, res.Cookie, nil)))

	t.Run("header preset original", func(t *testing.T) {
		p.reload(t, "--headers-preset", "original")
		who := whoami(t, mcpSession(t, p.URL, res.Cookie, nil))
		if who.Headers["X-User-ID"] != oidcprovider.DemoUserID || who.Headers["X-User-Email"] != oidcprovider.DemoEmail ||
			who.Headers["X-User-Groups"] != strings.Join(oidcprovider.DemoGroups(), ",") {
			t.Errorf("after reload the MCP server saw %v, want X-User-ID/-Email/-Groups of the demo user", who.Headers)
		}
		if v, ok := who.Headers["X-Forwarded-User"]; ok {
			t.Errorf("X-Forwarded-User = %q still sent after switching presets", v)
		}
	})
	t.Run("allowed groups", func(t *testing.T) {
		p.reload(t, "--authz-allowed-groups", "not-a-member")
		r := do(t, http.MethodGet, p.URL+"/headers", res.Cookie, nil)
		if r.Status != http.StatusForbidden || decodeError(t, r).Error.Code != "forbidden" {
			t.Fatalf("request outside the allowed groups = %s, want 403 forbidden", r)
		}
	})
	t.Run("public path", func(t *testing.T) {
		if r := do(t, http.MethodGet, p.URL+"/public/hello", nil, nil); r.Status != http.StatusUnauthorized {
			t.Fatalf("before the reload /public/hello = %s, want 401", r)
		}
		p.reload(t, "--public-paths", "/public/*")
		r := do(t, http.MethodGet, p.URL+"/public/hello", nil, nil)
		if r.Status != http.StatusOK || string(r.Body) != "public page" {
			t.Fatalf("public path after reload = %s, want 200", r)
		}
		if r := do(t, http.MethodGet, p.URL+"/headers", res.Cookie, nil); r.Status != http.StatusOK {
			t.Fatalf("the reload did not restore access: %s", r)
		}
	})
}
