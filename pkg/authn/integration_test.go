package authn

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// replica is one proxy instance: its own Authenticator and relying party,
// sharing the session store with the other replicas.
type replica struct {
	a *Authenticator
	h http.Handler
}

// cluster is two replicas behind one real Redis and one real OP.
type cluster struct {
	op     *oidcprovider.Provider
	redis  *redisserver.Server
	store  *faultyStore // counting wrapper around the real Redis store
	codec  *session.Codec
	a, b   replica
	gate   *refreshGate
	rpOpts oidc.Options
}

// refreshGate wraps the real relying party to hold the first refresh until
// released, so the test can make sure other requests are waiting on the
// lock meanwhile. With an open gate it only delegates.
type refreshGate struct {
	RelyingParty
	mu      sync.Mutex
	release chan struct{}
}

func (g *refreshGate) Refresh(ctx context.Context, rt string) (*oidc.Tokens, error) {
	g.mu.Lock()
	ch := g.release
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return g.RelyingParty.Refresh(ctx, rt)
}

func newRP(t *testing.T, op *oidcprovider.Provider) *oidc.RelyingParty {
	t.Helper()
	rp, err := oidc.New(oidc.Options{
		Issuer:       op.Issuer(),
		ClientID:     oidcprovider.DefaultClientID,
		ClientSecret: oidcprovider.DefaultClientSecret,
		Scopes:       []string{"openid", "profile", "email", "offline_access"},
		Logger:       zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rp.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	return rp
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	op := oidcprovider.Start(t, oidcprovider.Options{})
	rs := redisserver.Start(t)
	store, err := session.NewRedis(session.RedisOptions{URL: rs.URL(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	codec, err := session.NewCodec(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{op: op, redis: rs, store: &faultyStore{Store: store}, codec: codec, gate: &refreshGate{}}
	mk := func(rp RelyingParty) replica {
		a, err := New(Options{
			Sessions:              c.store,
			States:                c.store,
			Locks:                 c.store,
			Codec:                 codec,
			RelyingParty:          rp,
			Logger:                zaptest.NewLogger(t),
			InsecureCookies:       true,
			RedirectURL:           func(*http.Request) string { return "http://app.test/oauth2/callback" },
			PostLogoutRedirectURL: "http://app.test/",
		})
		if err != nil {
			t.Fatal(err)
		}
		return replica{a: a, h: newTestHandler(a)}
	}
	c.gate.RelyingParty = newRP(t, op)
	c.a = mk(c.gate)
	c.b = mk(newRP(t, op))
	return c
}

// login starts on from, logs in at the real OP and delivers the callback to
// to. It returns the callback response.
func (c *cluster) login(t *testing.T, from, to replica, target string) *http.Response {
	t.Helper()
	start := do(from.h, http.MethodGet, target, navHeader)
	if start.StatusCode != http.StatusFound {
		t.Fatalf("start: %d", start.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cb, err := c.op.Login(ctx, nil, start.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if cb.Path != DefaultCallbackPath {
		t.Fatalf("provider returned to %v", cb)
	}
	return do(to.h, http.MethodGet, cb.RequestURI(), navHeader, cookieNamed(start, from.a.stateCk))
}

func (c *cluster) sessionCookie(t *testing.T) *http.Cookie {
	t.Helper()
	resp := c.login(t, c.a, c.b, "/")
	ck := cookieNamed(resp, c.a.a.CookieName())
	if resp.StatusCode != http.StatusFound || ck == nil {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	return ck
}

func TestRealLoginAcrossReplicas(t *testing.T) {
	c := newCluster(t)
	resp := c.login(t, c.a, c.b, "/app/page?x=1")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app/page?x=1" {
		t.Fatalf("callback on B: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := cookieNamed(resp, c.b.a.CookieName())
	if ck == nil {
		t.Fatal("no session cookie")
	}
	for name, r := range map[string]replica{"A": c.a, "B": c.b} {
		got := do(r.h, http.MethodPost, "/mcp", nil, ck)
		body, _ := io.ReadAll(got.Body)
		if got.StatusCode != http.StatusOK || string(body) != "hello "+oidcprovider.DemoUserID+" via cookie" {
			t.Fatalf("replica %s: %d %q", name, got.StatusCode, body)
		}
	}
	info := do(c.a.h, http.MethodGet, LegacySessionPath, nil, ck)
	raw, _ := io.ReadAll(info.Body)
	if info.StatusCode != http.StatusOK || !strings.Contains(string(raw), `"email":"`+oidcprovider.DemoEmail+`"`) || !strings.Contains(string(raw), `"mcp-users"`) {
		t.Fatalf("session info: %d %s", info.StatusCode, raw)
	}

	// Logout on A is seen by B.
	out := do(c.a.h, http.MethodGet, LogoutPath, logoutNavHeader, ck)
	loc, _ := out.Location()
	if out.StatusCode != http.StatusSeeOther || loc == nil || !strings.HasPrefix(loc.String(), c.op.Issuer()) || loc.Query().Get("id_token_hint") == "" {
		t.Fatalf("logout: %d %v", out.StatusCode, loc)
	}
	if loc.Query().Get("post_logout_redirect_uri") != "http://app.test/" {
		t.Fatalf("post logout redirect %q", loc.Query().Get("post_logout_redirect_uri"))
	}
	assertAPIError(t, do(c.b.h, http.MethodGet, "/x", nil, ck), http.StatusUnauthorized, apierror.CodeUnauthenticated)
}

func TestRealCallbackReplayAcrossReplicas(t *testing.T) {
	c := newCluster(t)
	start := do(c.a.h, http.MethodGet, "/", navHeader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cb, err := c.op.Login(ctx, nil, start.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	sc := cookieNamed(start, c.a.a.stateCk)
	if r := do(c.b.h, http.MethodGet, cb.RequestURI(), navHeader, sc); r.StatusCode != http.StatusFound {
		t.Fatalf("first callback: %d", r.StatusCode)
	}
	replay := do(c.a.h, http.MethodGet, cb.RequestURI(), navHeader, sc)
	assertAPIError(t, replay, http.StatusBadRequest, apierror.CodeBadRequest)
}

func TestRealConcurrentRefreshAcrossReplicas(t *testing.T) {
	const n = 10
	c := newCluster(t)
	ck := c.sessionCookie(t)
	if got := c.op.RefreshRequests(); got != 0 {
		t.Fatalf("refreshes before the test: %d", got)
	}
	setTokenExpiry(t, c.a.a, c.store, c.codec, ck, time.Now().Add(10*time.Second))
	_, before := storedPayloadOf(t, c.a.a, c.codec, ck)

	release := make(chan struct{})
	c.gate.mu.Lock()
	c.gate.release = release
	c.gate.mu.Unlock()
	// Every request goes through A or B; only A's provider calls are gated,
	// so make sure A gets the lock: one request on A first.
	var wg sync.WaitGroup
	var failed atomic.Int32
	fire := func(r replica) {
		wg.Go(func() {
			if code := doAs(r.h, http.MethodGet, "/x", nil, ck).StatusCode; code != http.StatusOK {
				failed.Add(1)
				t.Errorf("request failed: %d", code)
			}
		})
	}
	lockedBefore := c.store.lockedSeen.Load()
	fire(c.a)
	waitfor.True(t, 10*time.Second, "A holding the refresh lock", func() bool {
		tk, _ := c.codec.Decode(ck.Value)
		l, err := c.store.Store.TryLock(context.Background(), refreshLockName(tk.ID()), time.Second)
		if err == nil {
			_ = l.Unlock(context.Background())
		}
		return errors.Is(err, session.ErrLocked)
	})
	for i := range n - 1 {
		if i%2 == 0 {
			fire(c.b)
		} else {
			fire(c.a)
		}
	}
	waitfor.True(t, 10*time.Second, "all other requests waiting", func() bool { return c.store.lockedSeen.Load()-lockedBefore >= n-1 })
	close(release)
	wg.Wait()

	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	if got := c.op.RefreshRequests(); got != 1 {
		t.Fatalf("refresh requests at the IdP = %d, want exactly 1", got)
	}
	_, after := storedPayloadOf(t, c.a.a, c.codec, ck)
	if after.RefreshToken == before.RefreshToken || after.AccessToken == before.AccessToken {
		t.Fatal("rotated tokens were not stored")
	}

	// The stored (rotated) refresh token works for the next refresh, on B.
	c.gate.mu.Lock()
	c.gate.release = nil
	c.gate.mu.Unlock()
	setTokenExpiry(t, c.a.a, c.store, c.codec, ck, time.Now().Add(10*time.Second))
	if r := do(c.b.h, http.MethodGet, "/x", nil, ck); r.StatusCode != http.StatusOK {
		t.Fatalf("second refresh on B: %d", r.StatusCode)
	}
	if got := c.op.RefreshRequests(); got != 2 {
		t.Fatalf("refresh requests = %d, want 2", got)
	}
}

func TestRealInvalidGrantEndsSession(t *testing.T) {
	c := newCluster(t)
	ck := c.sessionCookie(t)
	tk, _ := c.codec.Decode(ck.Value)
	c.op.RevokeRefreshTokens()
	setTokenExpiry(t, c.a.a, c.store, c.codec, ck, time.Now().Add(10*time.Second))
	resp := do(c.b.h, http.MethodGet, "/x", nil, ck)
	assertAPIError(t, resp, http.StatusUnauthorized, apierror.CodeUnauthenticated)
	if cl := cookieNamed(resp, c.b.a.CookieName()); cl == nil || cl.MaxAge >= 0 {
		t.Fatal("cookie not cleared")
	}
	if _, err := c.store.GetSession(context.Background(), tk.ID()); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("session not deleted: %v", err)
	}
}

func TestRealRedisDown(t *testing.T) {
	c := newCluster(t)
	ck := c.sessionCookie(t)
	c.redis.Stop()
	for _, h := range []http.Header{nil, navHeader} {
		resp := do(c.a.h, http.MethodGet, "/app", h, ck)
		assertAPIError(t, resp, http.StatusServiceUnavailable, apierror.CodeSessionStoreDown)
		if len(resp.Header.Values("Set-Cookie")) != 0 || resp.Header.Get("Location") != "" {
			t.Fatalf("outage cleared the cookie or redirected: %v", resp.Header)
		}
	}
	// Starting a login needs the store too: a clear 503, not a broken login.
	assertAPIError(t, do(c.b.h, http.MethodGet, StartPath, navHeader), http.StatusServiceUnavailable, apierror.CodeSessionStoreDown)
	if c.store.deletes.Load() != 0 {
		t.Fatal("a store outage led to a delete")
	}
	// The client reconnects by itself; the restarted server has no data
	// (no persistence), so the session is now really gone.
	c.redis.Restart()
	waitfor.True(t, 10*time.Second, "reconnect", func() bool {
		return do(c.a.h, http.MethodGet, "/x", nil, ck).StatusCode == http.StatusUnauthorized
	})
}

func storedPayloadOf(t *testing.T, a *Authenticator, codec *session.Codec, ck *http.Cookie) (session.Record, payload) {
	t.Helper()
	tk, err := codec.Decode(ck.Value)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := a.load(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	return cur.rec, cur.payload
}
