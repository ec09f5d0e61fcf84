package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/sessioncache"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// sessionInfo is the JSON of GET /oauth2/session.
type sessionInfo struct {
	Authenticated bool `json:"authenticated"`
	User          struct {
		Subject string   `json:"sub"`
		Email   string   `json:"email"`
		Groups  []string `json:"groups"`
	} `json:"user"`
}

func assertSessionInfo(t *testing.T, base string, cookie *http.Cookie) {
	t.Helper()
	r := do(t, http.MethodGet, base+"/oauth2/session", cookie, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s/oauth2/session = %s, want 200", base, r)
	}
	var info sessionInfo
	if err := json.Unmarshal(r.Body, &info); err != nil {
		t.Fatalf("session info: %v (%s)", err, r.Body)
	}
	if !info.Authenticated || info.User.Subject != oidcprovider.DemoUserID || info.User.Email != oidcprovider.DemoEmail ||
		!slices.Equal(info.User.Groups, oidcprovider.DemoGroups()) {
		t.Fatalf("session info on %s = %+v, want the demo user", base, info)
	}
}

// Login started on one replica and finished on another works; the session
// is then valid on every replica, and a logout on one ends it on all.
func TestLoginAcrossReplicasSharingRedis(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	a := e.start(t, proxyOptions{})
	b := e.start(t, proxyOptions{})

	res := login(t, e.idp, a.URL, b.URL, "/somewhere")

	for _, r := range []*replica{a, b} {
		assertSessionInfo(t, r.URL, res.Cookie)
		assertDemoIdentity(t, whoami(t, mcpSession(t, r.URL, res.Cookie, nil)))
	}

	out := do(t, http.MethodPost, a.URL+"/oauth2/logout", res.Cookie, nil)
	if out.Status != http.StatusOK || !strings.Contains(string(out.Body), `"logged_out":true`) {
		t.Fatalf("logout on A = %s, want 200 logged_out", out)
	}
	if c := sessionCookieFrom(out.Header); c == nil || c.MaxAge >= 0 {
		t.Errorf("logout did not clear the cookie: Set-Cookie %q", out.Header.Values("Set-Cookie"))
	}
	// B may have the session in its local cache: the logout reaches it
	// through Redis pub/sub, normally before the next request, and within
	// the cache TTL in any case (pkg/sessioncache).
	for _, path := range []string{"/oauth2/session", "/headers"} {
		var r response
		waitfor.Poll(sessioncache.DefaultTTL, waitfor.Interval, func() bool {
			r = do(t, http.MethodGet, b.URL+path, res.Cookie, nil)
			return r.Status != http.StatusOK
		})
		if r.Status != http.StatusUnauthorized || decodeError(t, r).Error.Code != "unauthenticated" {
			t.Errorf("GET %s on B after logout on A = %s, want 401 unauthenticated within %s", path, r, sessioncache.DefaultTTL)
		}
	}
}

// MCP clients and other API callers get a JSON 401 they can act on;
// browsers navigating to a page are sent to the provider to log in.
func TestUnauthenticatedAPIGetsJSONBrowserGetsRedirect(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.start(t, proxyOptions{})

	tests := []struct {
		name         string
		method, path string
		header       http.Header
		wantStatus   int
	}{
		{"MCP POST", http.MethodPost, "/mcp", http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}, http.StatusUnauthorized},
		{"fetch GET", http.MethodGet, "/", http.Header{"Accept": {"*/*"}, "Sec-Fetch-Mode": {"cors"}}, http.StatusUnauthorized},
		{"browser navigation", http.MethodGet, "/", http.Header{"Accept": {"text/html,application/xhtml+xml"}, "Sec-Fetch-Mode": {"navigate"}}, http.StatusFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, p.URL+tt.path, nil, tt.header)
			if r.Status != tt.wantStatus {
				t.Fatalf("%s %s = %s, want %d", tt.method, tt.path, r, tt.wantStatus)
			}
			if tt.wantStatus == http.StatusFound {
				if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, e.idp.Issuer()+"/") {
					t.Fatalf("Location = %q, want the provider %s", loc, e.idp.Issuer())
				}
				return
			}
			if loc := r.Header.Get("Location"); loc != "" {
				t.Errorf("API caller got a Location %q", loc)
			}
			body := decodeError(t, r)
			if body.Error.Code != "unauthenticated" || body.Error.Message == "" || body.RequestID == "" {
				t.Fatalf("401 body = %+v, want code unauthenticated, a message and a request_id", body)
			}
		})
	}
}

// Identity headers a client sends are dropped in every spelling; only the
// proxy's own values reach the MCP server.
func TestSpoofedIdentityHeadersAreReplaced(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.start(t, proxyOptions{})
	res := login(t, e.idp, p.URL, p.URL, "/")

	spoof := http.Header{
		"X-Forwarded-User":   {"admin"},
		"x_forwarded_email":  {"evil@x"},
		"X-User-ID":          {"root"},
		"X-User-Groups":      {"root"},
		"X-Forwarded-Groups": {"admin"},
	}
	spoofed := []string{"admin", "evil@x", "root"}

	who := whoami(t, mcpSession(t, p.URL, res.Cookie, spoof))
	assertDemoIdentity(t, who)
	for name, v := range who.Headers {
		if slices.Contains(spoofed, v) {
			t.Errorf("MCP server saw spoofed %s: %q", name, v)
		}
	}

	// The header dump shows every header in any spelling.
	r := do(t, http.MethodGet, p.URL+"/headers", res.Cookie, spoof)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /headers = %s", r)
	}
	var seen http.Header
	if err := json.Unmarshal(r.Body, &seen); err != nil {
		t.Fatal(err)
	}
	for name, values := range seen {
		for _, v := range values {
			for _, s := range spoofed {
				if v == s {
					t.Errorf("upstream received spoofed value in %s: %q", name, v)
				}
			}
		}
	}
	if got := seen.Get("X-Forwarded-User"); got != oidcprovider.DemoUserID {
		t.Errorf("X-Forwarded-User = %q, want %q", got, oidcprovider.DemoUserID)
	}
}

// A Redis outage answers cookie requests 503 without touching the cookie or
// bouncing anybody to login, keeps the replica ready, and heals by itself.
func TestRedisOutage(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	p := e.start(t, proxyOptions{})
	res := login(t, e.idp, p.URL, p.URL, "/")
	if r := do(t, http.MethodGet, p.URL+"/headers", res.Cookie, nil); r.Status != http.StatusOK {
		t.Fatalf("before the outage: %s", r)
	}

	e.redis.Stop()
	// The local session cache may serve the session it just verified
	// until its subscription reports the closed connection (milliseconds;
	// README "Failure behaviour"); never anything but 200 or 503.
	var first response
	if !waitfor.Poll(2*session.DefaultHealthInterval+waitFor, waitfor.Interval, func() bool {
		first = do(t, http.MethodGet, p.URL+"/headers", res.Cookie, http.Header{"Accept": {"application/json"}})
		if first.Status != http.StatusOK && first.Status != http.StatusServiceUnavailable {
			t.Fatalf("just after Redis went down = %s, want 200 (cached) or 503", first)
		}
		return first.Status == http.StatusServiceUnavailable
	}) {
		t.Fatalf("Redis down: cookie request still %s; want 503 once the session cache noticed", first)
	}
	for _, h := range []http.Header{
		{"Accept": {"application/json"}},
		{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}},
	} {
		r := do(t, http.MethodGet, p.URL+"/headers", res.Cookie, h)
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("during the outage (%v) = %s, want 503", h, r)
		}
		if code := decodeError(t, r).Error.Code; code != "session_store_unavailable" {
			t.Errorf("error code = %q, want session_store_unavailable", code)
		}
		if loc := r.Header.Get("Location"); loc != "" {
			t.Errorf("outage redirected to %q", loc)
		}
		if sc := r.Header.Values("Set-Cookie"); len(sc) > 0 {
			t.Errorf("outage set cookies %q", sc)
		}
	}
	if r := do(t, http.MethodGet, p.Admin+"/readyz", nil, nil); r.Status != http.StatusOK {
		t.Errorf("/readyz during the Redis outage = %s, want 200", r)
	}

	e.redis.Restart()
	// The restarted Redis is empty: the old session is gone, which is a
	// plain 401 (not 503) once the proxy has reconnected.
	var r response
	waitfor.Poll(waitFor, waitfor.Interval, func() bool {
		r = do(t, http.MethodGet, p.URL+"/headers", res.Cookie, http.Header{"Accept": {"application/json"}})
		return r.Status != http.StatusServiceUnavailable
	})
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("old cookie after Redis restart = %s, want 401", r)
	}
	fresh := login(t, e.idp, p.URL, p.URL, "/")
	if r := do(t, http.MethodGet, p.URL+"/headers", fresh.Cookie, nil); r.Status != http.StatusOK {
		t.Fatalf("new login after Redis restart: %s", r)
	}
}

// With rotating refresh tokens, many concurrent requests on two replicas for
// a session whose access token is about to expire cause exactly one refresh
// at the provider, and none of them fails.
func TestConcurrentRefreshAcrossReplicas(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	clock := &fakeclock.Shifted{}
	rec := newTokenRecorder()
	// The test clock moves the session to the edge of its token's expiry.
	// The new token's expiry is computed from real time, so once the
	// provider has issued it the clock returns to real time: from then on
	// the new token is fresh, as it would be in production.
	rec.onRefresh = func() { clock.Set(0) }
	opts := proxyOptions{now: clock.Now, httpClient: rec.client(), args: []string{"--oidc-scopes", offlineScopes}}
	a := e.start(t, opts)
	b := e.start(t, opts)
	res := login(t, e.idp, a.URL, a.URL, "/")

	before := e.idp.RefreshRequests()
	// Tokens live 5m and are refreshed within 1m of expiry (the defaults).
	clock.Set(4*time.Minute + 30*time.Second)

	const perReplica = 10
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make(chan response, 2*perReplica)
	for _, rep := range []*replica{a, b} {
		for range perReplica {
			wg.Go(func() {
				<-start
				r, err := send(http.MethodGet, rep.URL+"/data", res.Cookie, http.Header{"Accept": {"application/json"}})
				if err != nil {
					r = response{Body: []byte(err.Error())}
				}
				results <- r
			})
		}
	}
	close(start)
	wg.Wait()
	close(results)
	for r := range results {
		if r.Status != http.StatusOK {
			t.Errorf("concurrent request = %s, want 200", r)
		}
	}
	if got := e.idp.RefreshRequests() - before; got != 1 {
		t.Fatalf("refresh requests at the provider = %d, want exactly 1", got)
	}
	// The session keeps working with the rotated refresh token.
	if r := do(t, http.MethodGet, b.URL+"/data", res.Cookie, nil); r.Status != http.StatusOK {
		t.Fatalf("after the refresh: %s", r)
	}
}
