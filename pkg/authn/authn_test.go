package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

func TestIsNavigation(t *testing.T) {
	tests := []struct {
		name   string
		method string
		header http.Header
		want   bool
	}{
		{"fetch metadata navigate", "GET", http.Header{"Sec-Fetch-Mode": {"navigate"}}, true},
		{"fetch metadata navigate head", "HEAD", http.Header{"Sec-Fetch-Mode": {"navigate"}}, true},
		{"fetch metadata cors", "GET", http.Header{"Sec-Fetch-Mode": {"cors"}, "Accept": {"text/html"}}, false},
		{"fetch metadata no-cors", "GET", http.Header{"Sec-Fetch-Mode": {"no-cors"}}, false},
		{"fetch metadata same-origin", "GET", http.Header{"Sec-Fetch-Mode": {"same-origin"}, "Accept": {"text/html"}}, false},
		{"old browser accept html", "GET", http.Header{"Accept": {"text/html,application/xhtml+xml,*/*;q=0.8"}}, true},
		{"accept html uppercase", "GET", http.Header{"Accept": {"TEXT/HTML"}}, true},
		{"accept html q zero", "GET", http.Header{"Accept": {"text/html;q=0, application/json"}}, false},
		{"accept wildcard only", "GET", http.Header{"Accept": {"*/*"}}, false},
		{"accept json", "GET", http.Header{"Accept": {"application/json"}}, false},
		{"mcp client sse", "GET", http.Header{"Accept": {"application/json, text/event-stream"}}, false},
		{"no headers", "GET", http.Header{}, false},
		{"post navigate", "POST", http.Header{"Sec-Fetch-Mode": {"navigate"}, "Accept": {"text/html"}}, false},
		{"post html", "POST", http.Header{"Accept": {"text/html"}}, false},
		{"put html", "PUT", http.Header{"Accept": {"text/html"}}, false},
		{"xhr with html accept", "GET", http.Header{"Accept": {"text/html"}, "X-Requested-With": {"XMLHttpRequest"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(tt.method, "http://x/", nil)
			r.Header = tt.header
			if got := IsNavigation(r); got != tt.want {
				t.Fatalf("IsNavigation = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewValidation(t *testing.T) {
	codec, _ := session.NewCodec(testSecret)
	mem := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = mem.Close() })
	base := func() Options {
		return Options{Sessions: mem, States: mem, Locks: mem, Codec: codec, RelyingParty: newFakeRP(time.Now), RedirectURL: func(*http.Request) string { return "https://x/cb" }}
	}
	tests := []struct {
		name    string
		mod     func(*Options)
		wantErr bool
		cookie  string
	}{
		{"defaults secure", func(*Options) {}, false, DefaultSecureCookieName},
		{"defaults insecure", func(o *Options) { o.InsecureCookies = true }, false, DefaultInsecureCookieName},
		{"host prefix insecure", func(o *Options) { o.InsecureCookies = true; o.CookieName = "__Host-x" }, true, ""},
		{"secure prefix insecure", func(o *Options) { o.InsecureCookies = true; o.CookieName = "__Secure-x" }, true, ""},
		{"custom name", func(o *Options) { o.CookieName = "sess" }, false, "sess"},
		{"bad cookie name", func(o *Options) { o.CookieName = "a b" }, true, ""},
		{"no sessions", func(o *Options) { o.Sessions = nil }, true, ""},
		{"no states", func(o *Options) { o.States = nil }, true, ""},
		{"no locks", func(o *Options) { o.Locks = nil }, true, ""},
		{"no codec", func(o *Options) { o.Codec = nil }, true, ""},
		{"no rp", func(o *Options) { o.RelyingParty = nil }, true, ""},
		{"no redirect url", func(o *Options) { o.RedirectURL = nil }, true, ""},
		{"relative callback", func(o *Options) { o.CallbackPath = "cb" }, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base()
			tt.mod(&o)
			a, err := New(o)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && a.CookieName() != tt.cookie {
				t.Fatalf("cookie name %q, want %q", a.CookieName(), tt.cookie)
			}
		})
	}
}

func TestCookieAttributes(t *testing.T) {
	tests := []struct {
		name     string
		insecure bool
		wantName string
	}{
		{"secure", false, "__Host-mcp-oidc-session"},
		{"insecure localhost", true, "mcp-oidc-session"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.InsecureCookies = tt.insecure; o.SessionTTL = 2 * time.Hour })
			state, sc := startLogin(t, e.h, e.a, "/")
			if sc.Name != tt.wantName+"-state" || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Secure == tt.insecure || sc.Path != "/" || sc.Domain != "" {
				t.Fatalf("state cookie attributes: %+v", sc)
			}
			if sc.Value != hashState(state) || strings.Contains(sc.Value, state) {
				t.Fatalf("state cookie must hold the state's hash only")
			}
			resp := e.login(t, "/")
			c := cookieNamed(resp, tt.wantName)
			if c == nil {
				t.Fatalf("no cookie %q in %v", tt.wantName, resp.Header.Values("Set-Cookie"))
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure == tt.insecure || c.Path != "/" || c.Domain != "" || c.MaxAge != 7200 {
				t.Fatalf("session cookie attributes: %+v", c)
			}
			if strings.HasPrefix(c.Name, "__Host-") != !tt.insecure {
				t.Fatalf("__Host- prefix must be used exactly when Secure")
			}
			if len(c.Value) > 200 {
				t.Fatalf("cookie carries more than the ticket: %d bytes", len(c.Value))
			}
			// The state cookie is cleared by the callback.
			if st := cookieNamed(resp, tt.wantName+"-state"); st == nil || st.MaxAge >= 0 {
				t.Fatalf("state cookie not cleared: %+v", st)
			}
		})
	}
}

func TestLoginAndAuthenticatedRequest(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.login(t, "/app?tab=2")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app?tab=2" {
		t.Fatalf("callback: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	c := cookieNamed(resp, e.a.CookieName())

	got := do(e.h, http.MethodPost, "/mcp", nil, c)
	body, _ := io.ReadAll(got.Body)
	if got.StatusCode != http.StatusOK || string(body) != "hello user-1 via cookie" {
		t.Fatalf("protected: %d %q", got.StatusCode, body)
	}

	for _, p := range []string{SessionPath, LegacySessionPath} {
		info := do(e.h, http.MethodGet, p, nil, c)
		var si struct {
			Authenticated bool `json:"authenticated"`
			User          struct {
				Sub      string   `json:"sub"`
				Email    string   `json:"email"`
				Name     string   `json:"name"`
				Username string   `json:"preferred_username"`
				Groups   []string `json:"groups"`
			} `json:"user"`
			ExpiresAt     time.Time `json:"expires_at"`
			IdleExpiresAt time.Time `json:"idle_expires_at"`
		}
		if err := json.NewDecoder(info.Body).Decode(&si); err != nil || info.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", p, info.StatusCode, err)
		}
		if !si.Authenticated || si.User.Sub != "user-1" || si.User.Email != "u1@example.com" || si.User.Name != "User One" ||
			si.User.Username != "u1" || len(si.User.Groups) != 2 {
			t.Fatalf("%s: %+v", p, si)
		}
		now := e.clock.Now()
		if d := si.ExpiresAt.Sub(now); d < DefaultSessionTTL-time.Second || d > DefaultSessionTTL+time.Second {
			t.Fatalf("expires_at %v is not now+12h", si.ExpiresAt)
		}
		if d := si.IdleExpiresAt.Sub(now); d < DefaultIdleTimeout-time.Second || d > DefaultIdleTimeout+time.Second {
			t.Fatalf("idle_expires_at %v is not now+1h", si.IdleExpiresAt)
		}
	}
	// Session info without a session is a 401 JSON, never a redirect.
	info := do(e.h, http.MethodGet, SessionPath, navHeader)
	assertAPIError(t, info, http.StatusUnauthorized, apierror.CodeUnauthenticated)
}

func TestSessionIDChangesAtLogin(t *testing.T) {
	e := newEnv(t, nil)
	old := e.sessionCookie(t)
	oldTicket, _ := e.codec.Decode(old.Value)

	resp := e.login(t, "/", old)
	fresh := cookieNamed(resp, e.a.CookieName())
	if fresh == nil || fresh.Value == old.Value {
		t.Fatal("login must issue a new session cookie")
	}
	newTicket, _ := e.codec.Decode(fresh.Value)
	if newTicket.ID() == oldTicket.ID() {
		t.Fatal("session ID reused across logins (fixation)")
	}
	if _, err := e.store.GetSession(context.Background(), oldTicket.ID()); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("old session still stored: %v", err)
	}
	assertAPIError(t, do(e.h, http.MethodGet, "/x", nil, old), http.StatusUnauthorized, apierror.CodeUnauthenticated)
	if r := do(e.h, http.MethodGet, "/x", nil, fresh); r.StatusCode != http.StatusOK {
		t.Fatalf("new session rejected: %d", r.StatusCode)
	}
}

func TestCallbackRejections(t *testing.T) {
	e := newEnv(t, nil)
	cb := func(q url.Values, cookies ...*http.Cookie) *http.Response {
		return do(e.h, http.MethodGet, DefaultCallbackPath+"?"+q.Encode(), navHeader, cookies...)
	}

	t.Run("forged state", func(t *testing.T) {
		forged := "forged-state-value"
		resp := cb(url.Values{"state": {forged}, "code": {"code:" + forged}}, e.a.stateCookie(hashState(forged), time.Minute))
		assertAPIError(t, resp, http.StatusBadRequest, apierror.CodeBadRequest)
		assertNoSessionCookie(t, e, resp)
	})
	t.Run("replayed state", func(t *testing.T) {
		state, sc := startLogin(t, e.h, e.a, "/")
		q := url.Values{"state": {state}, "code": {"code:" + state}}
		if first := cb(q, sc); first.StatusCode != http.StatusFound {
			t.Fatalf("first use: %d", first.StatusCode)
		}
		resp := cb(q, sc)
		assertAPIError(t, resp, http.StatusBadRequest, apierror.CodeBadRequest)
		if msg := errorMessage(t, resp); msg != "login state is unknown, expired or already used" {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("state cookie of another login", func(t *testing.T) {
		state, _ := startLogin(t, e.h, e.a, "/")
		_, otherCookie := startLogin(t, e.h, e.a, "/")
		resp := cb(url.Values{"state": {state}, "code": {"code:" + state}}, otherCookie)
		assertAPIError(t, resp, http.StatusBadRequest, apierror.CodeBadRequest)
		assertNoSessionCookie(t, e, resp)
	})
	t.Run("no state cookie (login CSRF)", func(t *testing.T) {
		state, _ := startLogin(t, e.h, e.a, "/")
		resp := cb(url.Values{"state": {state}, "code": {"code:" + state}})
		assertAPIError(t, resp, http.StatusBadRequest, apierror.CodeBadRequest)
		assertNoSessionCookie(t, e, resp)
	})
	t.Run("missing state", func(t *testing.T) {
		assertAPIError(t, cb(url.Values{"code": {"x"}}), http.StatusBadRequest, apierror.CodeBadRequest)
	})
	t.Run("oversized state", func(t *testing.T) {
		big := strings.Repeat("s", 5000)
		assertAPIError(t, cb(url.Values{"state": {big}, "code": {"x"}}, e.a.stateCookie(hashState(big), time.Minute)), http.StatusBadRequest, apierror.CodeBadRequest)
	})
	t.Run("missing code", func(t *testing.T) {
		state, sc := startLogin(t, e.h, e.a, "/")
		assertAPIError(t, cb(url.Values{"state": {state}}, sc), http.StatusBadRequest, apierror.CodeBadRequest)
	})
	t.Run("wrong code", func(t *testing.T) {
		state, sc := startLogin(t, e.h, e.a, "/")
		resp := cb(url.Values{"state": {state}, "code": {"code:other"}}, sc)
		assertAPIError(t, resp, http.StatusUnauthorized, apierror.CodeLoginFailed)
		assertNoSessionCookie(t, e, resp)
	})
	t.Run("provider error is sanitized and consumes the state", func(t *testing.T) {
		state, sc := startLogin(t, e.h, e.a, "/")
		resp := cb(url.Values{"state": {state}, "error": {"access_denied"}, "error_description": {"user said <script>no</script>\r\nX-Injected: 1"}}, sc)
		assertAPIError(t, resp, http.StatusUnauthorized, apierror.CodeLoginFailed)
		msg := errorMessage(t, resp)
		if strings.ContainsAny(msg, "<>\r\n") || !strings.Contains(msg, "access_denied") {
			t.Fatalf("unsanitized message %q", msg)
		}
		again := cb(url.Values{"state": {state}, "code": {"code:" + state}}, sc)
		assertAPIError(t, again, http.StatusBadRequest, apierror.CodeBadRequest)
	})
	t.Run("provider error other than denial", func(t *testing.T) {
		assertAPIError(t, cb(url.Values{"error": {"invalid_request"}}), http.StatusBadRequest, apierror.CodeLoginFailed)
	})
}

func TestReturnURLTricksEndAtRoot(t *testing.T) {
	e := newEnv(t, nil)
	for _, rd := range []string{
		"//evil.com", "/\\evil.com", "https://evil.com/", "/%2F%2Fevil.com", "/%5Cevil.com",
		"%2F%2Fevil.com", "/\t/evil.com", "/%09/evil.com", "javascript:alert(1)", "",
	} {
		t.Run(rd, func(t *testing.T) {
			resp := e.login(t, rd)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/" {
				t.Fatalf("rd %q: %d Location %q", rd, resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

func TestNoSessionResponses(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name     string
		method   string
		target   string
		header   http.Header
		redirect bool
	}{
		{"browser navigation", "GET", "/app/page?x=1", navHeader, true},
		{"old browser", "GET", "/app", http.Header{"Accept": {"text/html"}}, true},
		{"mcp client post", "POST", "/mcp", http.Header{"Accept": {"application/json, text/event-stream"}}, false},
		{"mcp client sse", "GET", "/mcp", http.Header{"Accept": {"text/event-stream"}}, false},
		{"fetch", "GET", "/api", http.Header{"Sec-Fetch-Mode": {"cors"}, "Accept": {"text/html"}}, false},
		{"form post", "POST", "/app", http.Header{"Sec-Fetch-Mode": {"navigate"}, "Accept": {"text/html"}}, false},
		{"curl", "GET", "/", http.Header{"Accept": {"*/*"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(e.h, tt.method, tt.target, tt.header)
			if !tt.redirect {
				assertAPIError(t, resp, http.StatusUnauthorized, apierror.CodeUnauthenticated)
				if resp.Header.Get("Location") != "" {
					t.Fatal("API caller got a redirect")
				}
				return
			}
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d", resp.StatusCode)
			}
			loc, _ := resp.Location()
			if loc.Host != "idp.example" {
				t.Fatalf("redirected to %v", loc)
			}
			// The login returns to the page the browser asked for.
			state := loc.Query().Get("state")
			cb := do(e.h, "GET", DefaultCallbackPath+"?"+url.Values{"state": {state}, "code": {"code:" + state}}.Encode(), navHeader, cookieNamed(resp, e.a.stateCk))
			if cb.Header.Get("Location") != tt.target {
				t.Fatalf("returned to %q, want %q", cb.Header.Get("Location"), tt.target)
			}
		})
	}
}

func TestBadCookies(t *testing.T) {
	e := newEnv(t, nil)
	good := e.sessionCookie(t)
	other, _ := session.NewCodec([]byte("another-secret-another-secret-another-secret"))
	tk, _ := other.NewTicket()
	tests := []struct {
		name  string
		value string
	}{
		{"garbage", "not-a-ticket"},
		{"tampered", good.Value[:len(good.Value)-2] + "AA"},
		{"other secret", other.Encode(tk)},
		{"oversized", strings.Repeat("A", 16<<10)},
		{"valid but unknown session", func() string { t2, _ := e.codec.NewTicket(); return e.codec.Encode(t2) }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, h := range []http.Header{nil, navHeader} {
				resp := do(e.h, http.MethodGet, "/x", h, &http.Cookie{Name: e.a.CookieName(), Value: tt.value})
				cleared := cookieNamed(resp, e.a.CookieName())
				if cleared == nil || cleared.MaxAge >= 0 || cleared.Value != "" {
					t.Fatalf("bad cookie not cleared: %v", resp.Header.Values("Set-Cookie"))
				}
				if h == nil {
					assertAPIError(t, resp, http.StatusUnauthorized, apierror.CodeUnauthenticated)
				} else if resp.StatusCode != http.StatusFound {
					t.Fatalf("navigation with bad cookie: %d", resp.StatusCode)
				}
			}
		})
	}
	// The good session is unaffected.
	if r := do(e.h, http.MethodGet, "/x", nil, good); r.StatusCode != http.StatusOK {
		t.Fatalf("good cookie: %d", r.StatusCode)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SessionTTL = 2 * time.Hour; o.IdleTimeout = 3 * time.Hour })
	e.rp.tokens.Expiry = e.clock.Now().Add(24 * time.Hour)
	c := e.sessionCookie(t)
	e.clock.Advance(time.Hour)
	if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK {
		t.Fatalf("within TTL: %d", r.StatusCode)
	}
	e.clock.Advance(time.Hour + time.Second)
	resp := do(e.h, http.MethodGet, "/x", nil, c)
	assertAPIError(t, resp, http.StatusUnauthorized, apierror.CodeUnauthenticated)
	if cl := cookieNamed(resp, e.a.CookieName()); cl == nil || cl.MaxAge >= 0 {
		t.Fatal("expired session cookie not cleared")
	}
}

func TestLogout(t *testing.T) {
	tests := []struct {
		name     string
		endURL   string
		post     string
		method   string
		header   http.Header
		wantCode int
		wantLoc  string
	}{
		{"navigation to end_session", "https://idp.example/logout", "https://app.example/bye", "GET", logoutNavHeader, http.StatusSeeOther, "https://idp.example/logout?"},
		{"form post to end_session", "https://idp.example/logout", "", "POST", http.Header{"Sec-Fetch-Mode": {"navigate"}, "Origin": {"https://app.example"}}, http.StatusSeeOther, "https://idp.example/logout?"},
		{"no end_session, post logout url", "", "https://app.example/bye", "GET", logoutNavHeader, http.StatusSeeOther, "https://app.example/bye"},
		{"no end_session, root", "", "", "GET", logoutNavHeader, http.StatusSeeOther, "/"},
		{"api caller", "https://idp.example/logout", "", "POST", nil, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.PostLogoutRedirectURL = tt.post })
			e.rp.endURL = tt.endURL
			c := e.sessionCookie(t)
			tk, _ := e.codec.Decode(c.Value)
			resp := do(e.h, tt.method, LogoutPath, tt.header, c)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if cl := cookieNamed(resp, e.a.CookieName()); cl == nil || cl.MaxAge >= 0 {
				t.Fatal("cookie not cleared")
			}
			if _, err := e.store.GetSession(context.Background(), tk.ID()); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("session still stored: %v", err)
			}
			if tt.wantCode == http.StatusOK {
				var body struct {
					LoggedOut     bool   `json:"logged_out"`
					EndSessionURL string `json:"end_session_url"`
				}
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || !body.LoggedOut || !strings.HasPrefix(body.EndSessionURL, tt.endURL) {
					t.Fatalf("body %+v %v", body, err)
				}
				return
			}
			loc := resp.Header.Get("Location")
			if !strings.HasPrefix(loc, tt.wantLoc) {
				t.Fatalf("Location %q, want prefix %q", loc, tt.wantLoc)
			}
			if tt.endURL != "" {
				u, _ := url.Parse(loc)
				if u.Query().Get("id_token_hint") != "idt-1" || u.Query().Get("post_logout_redirect_uri") != tt.post {
					t.Fatalf("end session query %v", u.Query())
				}
			}
			if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("session usable after logout: %d", r.StatusCode)
			}
		})
	}
}

func assertAPIError(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d", resp.StatusCode, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var b apierror.Body
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("body %q: %v", raw, err)
	}
	if b.Error.Code != code {
		t.Fatalf("code %q, want %q (message %q)", b.Error.Code, code, b.Error.Message)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(raw)))
}

func errorMessage(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b apierror.Body
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Error.Message
}

func assertNoSessionCookie(t *testing.T, e *env, resp *http.Response) {
	t.Helper()
	if c := cookieNamed(resp, e.a.CookieName()); c != nil && c.Value != "" {
		t.Fatal("a session cookie was issued")
	}
}

// recordingObserver collects outcomes as "kind:method:outcome".
type recordingObserver struct {
	mu  sync.Mutex
	got []string
}

func (o *recordingObserver) add(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, s)
}
func (o *recordingObserver) AuthOutcome(m, out string) { o.add("auth:" + m + ":" + out) }
func (o *recordingObserver) LoginOutcome(out string)   { o.add("login:" + out) }
func (o *recordingObserver) RefreshOutcome(out string) { o.add("refresh:" + out) }

var _ Observer = (*recordingObserver)(nil)

func TestObserverOutcomes(t *testing.T) {
	obs := &recordingObserver{}
	e, fs := newFaultyEnv(t, func(o *Options) { o.Observer = obs })
	e.rp.refresh = rotatingRefresh(e.clock)
	do(e.h, http.MethodGet, "/x", nil)
	c := e.sessionCookie(t)
	do(e.h, http.MethodGet, "/x", nil, c)
	setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(time.Second))
	do(e.h, http.MethodGet, "/x", nil, c)
	down := errors.New("down")
	fs.getErr.Store(&down)
	do(e.h, http.MethodGet, "/x", nil, c)
	want := []string{
		"auth:cookie:no_session", "login:ok", "auth:cookie:ok",
		"refresh:refreshed", "auth:cookie:ok", "auth:cookie:store_error",
	}
	if strings.Join(obs.got, ",") != strings.Join(want, ",") {
		t.Fatalf("outcomes\n got %v\nwant %v", obs.got, want)
	}
}

// TestCallbackKeepsLoginInProgress checks that the state cookie of a login
// in progress survives what is not the end of that login: a store outage
// while taking the state (the same callback works once the store is back)
// and a forged callback carrying someone else's state.
func TestCallbackKeepsLoginInProgress(t *testing.T) {
	tests := []struct {
		name    string
		disturb func(t *testing.T, e *env, fs *faultyStore, state string, sc *http.Cookie)
	}{
		{"store outage", func(t *testing.T, e *env, fs *faultyStore, state string, sc *http.Cookie) {
			down := error(fmt.Errorf("redis: %w", errors.New("dial tcp: connection refused")))
			fs.takeErr.Store(&down)
			defer fs.takeErr.Store(nil)
			resp := do(e.h, http.MethodGet, DefaultCallbackPath+"?"+url.Values{"state": {state}, "code": {"code:" + state}}.Encode(), navHeader, sc)
			assertAPIError(t, resp, http.StatusServiceUnavailable, apierror.CodeSessionStoreDown)
			if len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Fatalf("store outage touched cookies: %v", resp.Header.Values("Set-Cookie"))
			}
		}},
		{"forged callback", func(t *testing.T, e *env, _ *faultyStore, _ string, sc *http.Cookie) {
			resp := do(e.h, http.MethodGet, DefaultCallbackPath+"?"+url.Values{"state": {"attacker-state"}, "code": {"attacker-code"}}.Encode(), navHeader, sc)
			assertAPIError(t, resp, http.StatusBadRequest, apierror.CodeBadRequest)
			if len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Fatalf("forged callback touched cookies: %v", resp.Header.Values("Set-Cookie"))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, fs := newFaultyEnv(t, nil)
			state, sc := startLogin(t, e.h, e.a, "/app")
			tt.disturb(t, e, fs, state, sc)
			resp := do(e.h, http.MethodGet, DefaultCallbackPath+"?"+url.Values{"state": {state}, "code": {"code:" + state}}.Encode(), navHeader, sc)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app" || cookieNamed(resp, e.a.CookieName()) == nil {
				t.Fatalf("callback after %s: status %d, location %q", tt.name, resp.StatusCode, resp.Header.Get("Location"))
			}
			if c := cookieNamed(resp, e.a.stateCk); c == nil || c.MaxAge >= 0 {
				t.Fatal("state cookie not cleared after the login finished")
			}
		})
	}
}
