package oauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/authz"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// fakeLogins is the browser login behind consent: a fixed upstream refresh
// token and session end.
type fakeLogins struct {
	refreshToken string
	sessionEnds  time.Time
}

func (f *fakeLogins) UpstreamLogin(context.Context) (string, time.Time, bool) {
	return f.refreshToken, f.sessionEnds, true
}

// fakeUpstream stands in for the identity provider's token endpoint, for
// the answers a real provider cannot be made to give on demand (a
// transport error, another subject, no ID token). It rotates refresh
// tokens and remembers which ones it saw.
type fakeUpstream struct {
	mu     sync.Mutex
	valid  string // the one refresh token it accepts
	seen   []string
	next   int
	err    error             // returned instead of tokens when set
	id     identity.Identity // identity of the next answer (zero: no ID token)
	rotate bool
}

func (f *fakeUpstream) Refresh(_ context.Context, rt string) (*oidc.Tokens, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, rt)
	if f.err != nil {
		return nil, f.err
	}
	if rt != f.valid {
		return nil, fmt.Errorf("fake: %w", oidc.ErrInvalidGrant)
	}
	out := &oidc.Tokens{AccessToken: "upstream-at", RefreshToken: rt, Identity: f.id}
	if f.rotate {
		f.next++
		f.valid = fmt.Sprintf("upstream-rt-%d", f.next)
		out.RefreshToken = f.valid
	}
	return out, nil
}

func (f *fakeUpstream) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func (f *fakeUpstream) set(fn func(*fakeUpstream)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// upstreamEnv is a façade whose consents carry an upstream login.
func upstreamEnv(t *testing.T, up *fakeUpstream, logins oauth.LoginSource, opts ...envOpt) (*env, string) {
	t.Helper()
	all := append([]envOpt{func(o *oauth.Options) {
		o.Upstream = up
		o.Logins = logins
	}}, opts...)
	e := newMemEnv(t, all...)
	return e, e.registerPublic()
}

// start runs a consent and the code exchange for alice and returns the
// token response.
func (e *env) start(id string) map[string]any {
	e.t.Helper()
	v := oauth2.GenerateVerifier()
	resp, m := e.token(codeForm(id, e.code(id, v, "alice"), v))
	if resp.StatusCode != 200 {
		e.t.Fatalf("exchange: %d %v", resp.StatusCode, m)
	}
	return m
}

func (e *env) refreshOK(id, rt string) map[string]any {
	e.t.Helper()
	resp, m := e.token(refreshForm(id, rt))
	if resp.StatusCode != 200 {
		e.t.Fatalf("refresh: %d %v, want 200", resp.StatusCode, m)
	}
	return m
}

// refreshEnded asserts the refresh is refused with invalid_grant and the
// family's access token at is revoked.
func (e *env) refreshEnded(id, rt, at string) {
	e.t.Helper()
	resp, m := e.token(refreshForm(id, rt))
	wantOAuthError(e.t, resp, m, 400, "invalid_grant")
	c := verifyAccess(e.t, e.srvs[0], at)
	if revoked, err := e.srvs[0].IsRevoked(e.t.Context(), c.ID, c.FamilyID); err != nil || !revoked {
		e.t.Fatalf("family's access token after the family ended: IsRevoked = %v, %v; want true", revoked, err)
	}
}

func TestRefreshRechecksUpstream(t *testing.T) {
	logins := &fakeLogins{refreshToken: "upstream-rt-0"}
	aliceFresh := identity.Identity{Subject: "alice", Email: "alice@example.com", EmailVerified: true, Groups: []string{"fresh-group"}}

	t.Run("within the interval the provider is not asked", func(t *testing.T) {
		up := &fakeUpstream{valid: "upstream-rt-0", rotate: true}
		e, id := upstreamEnv(t, up, logins)
		m := e.start(id)
		e.clock.Advance(oauth.DefaultUpstreamRecheck - time.Second)
		e.refreshOK(id, m["refresh_token"].(string))
		if n := len(up.calls()); n != 0 {
			t.Fatalf("provider asked %d times within the recheck interval, want 0", n)
		}
	})

	t.Run("past the interval: rotated upstream token kept, claims renewed", func(t *testing.T) {
		up := &fakeUpstream{valid: "upstream-rt-0", rotate: true, id: aliceFresh}
		e, id := upstreamEnv(t, up, logins)
		m := e.start(id)
		e.clock.Advance(oauth.DefaultUpstreamRecheck)
		m = e.refreshOK(id, m["refresh_token"].(string))
		if c := verifyAccess(t, e.srvs[0], m["access_token"].(string)); strings.Join(c.Groups, ",") != "fresh-group" || c.Name != "User alice" {
			t.Fatalf("access token after the recheck: groups %v name %q; want the provider's fresh groups and the kept name", c.Groups, c.Name)
		}
		m = e.refreshOK(id, m["refresh_token"].(string)) // just checked: no call
		e.clock.Advance(oauth.DefaultUpstreamRecheck)
		e.refreshOK(id, m["refresh_token"].(string))
		if got := strings.Join(up.calls(), " "); got != "upstream-rt-0 upstream-rt-1" {
			t.Fatalf("provider saw refresh tokens %q, want the login's, then the rotated one", got)
		}
	})

	t.Run("provider refuses: family ends", func(t *testing.T) {
		up := &fakeUpstream{valid: "something-else"}
		e, id := upstreamEnv(t, up, logins)
		m := e.start(id)
		e.clock.Advance(oauth.DefaultUpstreamRecheck)
		e.refreshEnded(id, m["refresh_token"].(string), m["access_token"].(string))
	})

	t.Run("provider returns another subject: family ends", func(t *testing.T) {
		up := &fakeUpstream{valid: "upstream-rt-0", id: identity.Identity{Subject: "mallory"}}
		e, id := upstreamEnv(t, up, logins)
		m := e.start(id)
		e.clock.Advance(oauth.DefaultUpstreamRecheck)
		e.refreshEnded(id, m["refresh_token"].(string), m["access_token"].(string))
	})

	t.Run("no ID token in the answer: login claims kept", func(t *testing.T) {
		up := &fakeUpstream{valid: "upstream-rt-0"}
		e, id := upstreamEnv(t, up, logins)
		m := e.start(id)
		e.clock.Advance(oauth.DefaultUpstreamRecheck)
		m = e.refreshOK(id, m["refresh_token"].(string))
		if c := verifyAccess(t, e.srvs[0], m["access_token"].(string)); c.Subject != "alice" || strings.Join(c.Groups, ",") != "staff" {
			t.Fatalf("access token: sub %q groups %v, want alice with the login's groups", c.Subject, c.Groups)
		}
	})

	t.Run("provider unreachable: 503, the same token works afterwards", func(t *testing.T) {
		up := &fakeUpstream{valid: "upstream-rt-0", err: errors.New("dial tcp: connection refused")}
		e, id := upstreamEnv(t, up, logins)
		m := e.start(id)
		e.clock.Advance(oauth.DefaultUpstreamRecheck)
		rt := m["refresh_token"].(string)
		req, _ := http.NewRequest(http.MethodPost, e.url()+oauth.PathToken, strings.NewReader(refreshForm(id, rt).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body := e.do(req)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"temporarily_unavailable"`) || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("refresh with the provider down: %d %s (Retry-After %q), want 503 temporarily_unavailable with Retry-After",
				resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
		up.set(func(f *fakeUpstream) { f.err = nil })
		e.refreshOK(id, rt)
	})
}

func TestRefreshFamilyLifetime(t *testing.T) {
	t.Run("absolute end fixed at consent", func(t *testing.T) {
		up := &fakeUpstream{valid: "upstream-rt-0"}
		e, id := upstreamEnv(t, up, &fakeLogins{refreshToken: "upstream-rt-0"}, func(o *oauth.Options) {
			o.RefreshMaxLifetime = 10 * 24 * time.Hour
			o.RefreshTokenTTL = 7 * 24 * time.Hour
			o.AccessTokenTTL = 24 * time.Hour
		})
		m := e.start(id)
		e.clock.Advance(6 * 24 * time.Hour)
		m = e.refreshOK(id, m["refresh_token"].(string))
		e.clock.Advance(3 * 24 * time.Hour) // day 9: inside both limits
		m = e.refreshOK(id, m["refresh_token"].(string))
		e.clock.Advance(24*time.Hour + time.Minute) // day 10: the refresh token's own TTL is not over
		resp, body := e.token(refreshForm(id, m["refresh_token"].(string)))
		wantOAuthError(t, resp, body, 400, "invalid_grant")
	})

	t.Run("without an upstream refresh token: ends with the browser session", func(t *testing.T) {
		up := &fakeUpstream{valid: "unused"}
		logins := &fakeLogins{}
		e, id := upstreamEnv(t, up, logins)
		logins.sessionEnds = e.clock.Now().Add(2 * time.Hour)
		m := e.start(id)
		e.clock.Advance(time.Hour + 59*time.Minute)
		m = e.refreshOK(id, m["refresh_token"].(string))
		e.clock.Advance(2 * time.Minute)
		resp, body := e.token(refreshForm(id, m["refresh_token"].(string)))
		wantOAuthError(t, resp, body, 400, "invalid_grant")
		if n := len(up.calls()); n != 0 {
			t.Fatalf("provider asked %d times, want 0 (no upstream refresh token)", n)
		}
	})
}

func TestRefreshReauthorizes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   func(o *oauth.Options, p *authz.Policy)
		change func(p *authz.Policy)
	}{
		{name: "allowed groups reloaded", change: func(p *authz.Policy) { p.Set(authz.Rules{AllowedGroups: []string{"admins"}}) }},
		{name: "allowed e-mail domain reloaded", change: func(p *authz.Policy) { p.Set(authz.Rules{AllowedEmailDomains: []string{"other.example"}}) }},
		{name: "required scope not granted", opts: func(o *oauth.Options, _ *authz.Policy) { o.RequiredScopes = []string{"mcp:resources"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := authz.New(authz.Rules{AllowedGroups: []string{"staff"}})
			e := newMemEnv(t, func(o *oauth.Options) {
				o.Authorizer = policy
				if tc.opts != nil {
					tc.opts(o, policy)
				}
			})
			id := e.registerPublic()
			m := e.start(id)
			if tc.change != nil {
				m = e.refreshOK(id, m["refresh_token"].(string)) // the rules pass before the change
				tc.change(policy)
			}
			e.refreshEnded(id, m["refresh_token"].(string), m["access_token"].(string))
		})
	}
}

// recordingStore remembers every key and value written, so a test can show
// what a dump of the store would reveal.
type recordingStore struct {
	session.Store
	mu      sync.Mutex
	written []string
}

func (s *recordingStore) record(key string, v []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written = append(s.written, key, string(v))
}

func (s *recordingStore) Put(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.record(key, v)
	return s.Store.Put(ctx, key, v, ttl)
}

func (s *recordingStore) PutOnce(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.record(key, v)
	return s.Store.PutOnce(ctx, key, v, ttl)
}

// TestStoreHoldsNoUsableSecrets: the upstream refresh token, the codes and
// the façade's refresh tokens never reach the store in the clear (keys or
// values).
func TestStoreHoldsNoUsableSecrets(t *testing.T) {
	mem := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = mem.Close() })
	rec := &recordingStore{Store: mem}
	const upstreamRT = "upstream-refresh-token-that-must-stay-sealed"
	up := &fakeUpstream{valid: upstreamRT, rotate: true}
	e := newEnv(t, rec, 1, func(o *oauth.Options) {
		o.Upstream = up
		o.Logins = &fakeLogins{refreshToken: upstreamRT}
	})
	id := e.registerPublic()
	v := oauth2.GenerateVerifier()
	code := e.code(id, v, "alice")
	resp, m := e.token(codeForm(id, code, v))
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: %d %v", resp.StatusCode, m)
	}
	e.clock.Advance(oauth.DefaultUpstreamRecheck)
	m2 := e.refreshOK(id, m["refresh_token"].(string))
	secrets := map[string]string{
		"upstream refresh token":         upstreamRT,
		"rotated upstream refresh token": "upstream-rt-1",
		"code":                           code,
		"first refresh token":            m["refresh_token"].(string),
		"second refresh token":           m2["refresh_token"].(string),
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, w := range rec.written {
		for what, secret := range secrets {
			if strings.Contains(w, secret) {
				t.Errorf("the store received the %s in the clear", what)
			}
		}
	}
	if len(up.calls()) != 1 {
		t.Fatalf("provider calls = %d, want 1", len(up.calls()))
	}
}
