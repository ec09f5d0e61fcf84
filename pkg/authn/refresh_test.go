package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// faultyStore wraps a real store to inject the failures a healthy backend
// cannot produce on demand, and to count calls.
type faultyStore struct {
	session.Store
	getErr  atomic.Pointer[error]
	takeErr atomic.Pointer[error]
	deletes atomic.Int32
	extends atomic.Int32
	// updateFailures makes that many of the next UpdateSession calls fail
	// with a transient error.
	updateFailures atomic.Int32
	// extendFailures makes that many of the next Extend calls fail with a
	// transient (non-ErrLocked) error, as during a Redis blip.
	extendFailures atomic.Int32
	// lockedSeen counts distinct requests (by request ID) that found the
	// refresh lock taken, i.e. requests waiting for someone else's refresh.
	lockedSeen atomic.Int32
	waiters    sync.Map
}

func (f *faultyStore) GetSession(ctx context.Context, id string) (session.Record, error) {
	if p := f.getErr.Load(); p != nil {
		return session.Record{}, *p
	}
	return f.Store.GetSession(ctx, id)
}

func (f *faultyStore) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	if p := f.takeErr.Load(); p != nil {
		return nil, *p
	}
	return f.Store.TakeOnce(ctx, key)
}

func (f *faultyStore) UpdateSession(ctx context.Context, rec session.Record) error {
	if f.updateFailures.Add(-1) >= 0 {
		return errors.New("redis: i/o timeout")
	}
	return f.Store.UpdateSession(ctx, rec)
}

func (f *faultyStore) DeleteSession(ctx context.Context, id string) error {
	f.deletes.Add(1)
	return f.Store.DeleteSession(ctx, id)
}

func (f *faultyStore) TryLock(ctx context.Context, name string, ttl time.Duration) (session.Lock, error) {
	l, err := f.Store.TryLock(ctx, name, ttl)
	if errors.Is(err, session.ErrLocked) {
		if id := requestid.FromContext(ctx); id != "" {
			if _, seen := f.waiters.LoadOrStore(id, true); !seen {
				f.lockedSeen.Add(1)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return &countingLock{Lock: l, n: &f.extends, failures: &f.extendFailures}, nil
}

type countingLock struct {
	session.Lock
	n        *atomic.Int32
	failures *atomic.Int32
}

func (c *countingLock) Extend(ctx context.Context, ttl time.Duration) error {
	c.n.Add(1)
	if c.failures.Add(-1) >= 0 {
		return errors.New("redis: i/o timeout")
	}
	return c.Lock.Extend(ctx, ttl)
}

func newFaultyEnv(t *testing.T, mod func(*Options)) (*env, *faultyStore) {
	t.Helper()
	clk := fakeclock.New(time.Now())
	mem := session.NewMemory(session.MemoryOptions{Now: clk.Now})
	t.Cleanup(func() { _ = mem.Close() })
	fs := &faultyStore{Store: mem}
	return newEnvWith(t, fs, clk, mod), fs
}

func rotatingRefresh(clk *fakeclock.Clock) func(context.Context, string) (*oidc.Tokens, error) {
	var n atomic.Int32
	return func(_ context.Context, rt string) (*oidc.Tokens, error) {
		i := n.Add(1) + 1
		return &oidc.Tokens{
			AccessToken:  fmt.Sprintf("at-%d", i),
			RefreshToken: fmt.Sprintf("rt-%d", i),
			Expiry:       clk.Now().Add(time.Hour),
			Identity:     identity.Identity{Subject: "user-1", Email: "new@example.com"},
		}, nil
	}
}

func TestRefresh(t *testing.T) {
	t.Run("about to expire refreshes once and stores the rotated tokens", func(t *testing.T) {
		e := newEnv(t, nil)
		e.rp.refresh = rotatingRefresh(e.clock)
		c := e.sessionCookie(t)
		setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
		for range 3 {
			if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK {
				t.Fatalf("status %d", r.StatusCode)
			}
		}
		if n := e.rp.refreshN.Load(); n != 1 {
			t.Fatalf("refreshes = %d, want 1", n)
		}
		_, p := e.storedPayload(t, c)
		if p.AccessToken != "at-2" || p.RefreshToken != "rt-2" || p.IDToken != "idt-1" || p.Identity.Email != "new@example.com" {
			t.Fatalf("stored payload after refresh: %+v", p)
		}
	})
	t.Run("refreshed ID token with only sub keeps the profile claims", func(t *testing.T) {
		e := newEnv(t, nil)
		e.rp.refresh = func(context.Context, string) (*oidc.Tokens, error) {
			return &oidc.Tokens{AccessToken: "at-2", IDToken: "idt-2", Expiry: e.clock.Now().Add(time.Hour),
				Identity: identity.Identity{Subject: "user-1", Groups: []string{"b"}}}, nil
		}
		c := e.sessionCookie(t)
		setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
		if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK {
			t.Fatalf("status %d", r.StatusCode)
		}
		_, p := e.storedPayload(t, c)
		want := identity.Identity{Subject: "user-1", Email: "u1@example.com", Name: "User One", Username: "u1", Groups: []string{"b"}}
		if got := p.Identity; got.Email != want.Email || got.Name != want.Name || got.Username != want.Username ||
			len(got.Groups) != 1 || got.Groups[0] != "b" || p.IDToken != "idt-2" {
			t.Fatalf("identity after refresh = %+v, want %+v", got, want)
		}
	})
	t.Run("a store blip while storing rotated tokens does not lose them", func(t *testing.T) {
		e, fs := newFaultyEnv(t, nil)
		e.rp.refresh = rotatingRefresh(e.clock)
		c := e.sessionCookie(t)
		setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
		fs.updateFailures.Store(2)
		if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK {
			t.Fatalf("status %d", r.StatusCode)
		}
		if _, p := e.storedPayload(t, c); p.RefreshToken != "rt-2" || p.AccessToken != "at-2" {
			t.Fatalf("rotated tokens lost: refresh token %q", p.RefreshToken)
		}
	})
	t.Run("not yet due does not refresh", func(t *testing.T) {
		e := newEnv(t, nil)
		e.rp.refresh = rotatingRefresh(e.clock)
		c := e.sessionCookie(t)
		setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(2*time.Minute))
		if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK || e.rp.refreshN.Load() != 0 {
			t.Fatalf("status %d, refreshes %d", r.StatusCode, e.rp.refreshN.Load())
		}
	})
	t.Run("invalid_grant ends the session", func(t *testing.T) {
		e, fs := newFaultyEnv(t, nil)
		e.rp.refresh = func(context.Context, string) (*oidc.Tokens, error) {
			return nil, fmt.Errorf("refresh: %w", oidc.ErrInvalidGrant)
		}
		c := e.sessionCookie(t)
		tk, _ := e.codec.Decode(c.Value)
		setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
		resp := do(e.h, http.MethodGet, "/x", nil, c)
		assertAPIError(t, resp, http.StatusUnauthorized, apierror.CodeUnauthenticated)
		if cl := cookieNamed(resp, e.a.CookieName()); cl == nil || cl.MaxAge >= 0 {
			t.Fatal("cookie not cleared")
		}
		if _, err := fs.Store.GetSession(context.Background(), tk.ID()); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("session not deleted: %v", err)
		}
		// A browser is sent to log in again.
		if r := do(e.h, http.MethodGet, "/x", navHeader, c); r.StatusCode != http.StatusFound {
			t.Fatalf("navigation after invalid_grant: %d", r.StatusCode)
		}
	})
	t.Run("other error keeps the session while the token is valid", func(t *testing.T) {
		e, fs := newFaultyEnv(t, nil)
		e.rp.refresh = func(context.Context, string) (*oidc.Tokens, error) { return nil, errors.New("idp: connection refused") }
		c := e.sessionCookie(t)
		setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
		resp := do(e.h, http.MethodGet, "/x", nil, c)
		if resp.StatusCode != http.StatusOK || cookieNamed(resp, e.a.CookieName()) != nil {
			t.Fatalf("status %d, set-cookie %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
		}
		if fs.deletes.Load() != 0 {
			t.Fatal("session deleted on a temporary refresh error")
		}
		_, p := e.storedPayload(t, c)
		if p.RefreshToken != "rt-1" {
			t.Fatalf("refresh token changed: %q", p.RefreshToken)
		}
	})
	t.Run("other error with an expired token answers 503 and keeps the session", func(t *testing.T) {
		e, fs := newFaultyEnv(t, nil)
		e.rp.refresh = func(context.Context, string) (*oidc.Tokens, error) { return nil, errors.New("idp: timeout") }
		c := e.sessionCookie(t)
		setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(-time.Second))
		resp := do(e.h, http.MethodGet, "/x", navHeader, c)
		assertAPIError(t, resp, http.StatusServiceUnavailable, apierror.CodeUpstreamUnavailable)
		if cookieNamed(resp, e.a.CookieName()) != nil || fs.deletes.Load() != 0 {
			t.Fatal("session or cookie touched on a temporary refresh error")
		}
		// Once the provider is back, the same session refreshes.
		e.rp.refresh = rotatingRefresh(e.clock)
		if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK {
			t.Fatalf("after recovery: %d", r.StatusCode)
		}
	})
	t.Run("refresh returning another subject ends the session", func(t *testing.T) {
		e := newEnv(t, nil)
		e.rp.refresh = func(context.Context, string) (*oidc.Tokens, error) {
			return &oidc.Tokens{AccessToken: "x", Expiry: e.clock.Now().Add(time.Hour), Identity: identity.Identity{Subject: "someone-else"}}, nil
		}
		c := e.sessionCookie(t)
		setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
		assertAPIError(t, do(e.h, http.MethodGet, "/x", nil, c), http.StatusUnauthorized, apierror.CodeUnauthenticated)
	})
	t.Run("lock held elsewhere past the wait keeps the valid token", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.RefreshWait = 50 * time.Millisecond })
		e.rp.refresh = rotatingRefresh(e.clock)
		c := e.sessionCookie(t)
		tk, _ := e.codec.Decode(c.Value)
		setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
		l, err := e.store.TryLock(context.Background(), refreshLockName(tk.ID()), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Unlock(context.Background()) }()
		if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK || e.rp.refreshN.Load() != 0 {
			t.Fatalf("status %d, refreshes %d", r.StatusCode, e.rp.refreshN.Load())
		}
	})
	t.Run("lock is extended while the provider is slow", func(t *testing.T) {
		testLockExtendedWhileProviderSlow(t, 0)
	})
	t.Run("lock extension survives a transient store error", func(t *testing.T) {
		testLockExtendedWhileProviderSlow(t, 1)
	})
}

// testLockExtendedWhileProviderSlow holds the provider until the refresh
// lock has been extended several times after extendFailures transient
// Extend errors, then checks the lock was held throughout and released.
func testLockExtendedWhileProviderSlow(t *testing.T, extendFailures int32) {
	t.Helper()
	e, fs := newFaultyEnv(t, func(o *Options) { o.RefreshLockTTL = 30 * time.Millisecond })
	fs.extendFailures.Store(extendFailures)
	c := e.sessionCookie(t)
	tk, _ := e.codec.Decode(c.Value)
	var heldDuringRefresh error
	e.rp.refresh = func(ctx context.Context, rt string) (*oidc.Tokens, error) {
		// Wait for several extensions: without them the 30ms lock would
		// have lapsed.
		waitfor.True(t, 10*time.Second, "lock extensions", func() bool { return fs.extends.Load() >= 3+extendFailures })
		_, heldDuringRefresh = fs.Store.TryLock(ctx, refreshLockName(tk.ID()), time.Minute)
		return rotatingRefresh(e.clock)(ctx, rt)
	}
	setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
	if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK {
		t.Fatalf("status %d", r.StatusCode)
	}
	if !errors.Is(heldDuringRefresh, session.ErrLocked) {
		t.Fatalf("lock was not held during the refresh: %v", heldDuringRefresh)
	}
	// And released afterwards.
	l, err := fs.Store.TryLock(context.Background(), refreshLockName(tk.ID()), time.Minute)
	if err != nil {
		t.Fatalf("lock not released: %v", err)
	}
	_ = l.Unlock(context.Background())
}

func TestConcurrentRefreshSingleFlight(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration // of refreshed access tokens
	}{
		{"tokens outlive the refresh margin", time.Hour},
		// Fresh tokens are due again at once (RefreshBefore is 1m); the
		// waiters must still see that someone else refreshed.
		{"tokens shorter-lived than the refresh margin", 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testConcurrentRefreshSingleFlight(t, tt.lifetime) })
	}
}

func testConcurrentRefreshSingleFlight(t *testing.T, lifetime time.Duration) {
	const n = 8
	e, fs := newFaultyEnv(t, nil)
	release := make(chan struct{})
	var refreshes atomic.Int32
	e.rp.refresh = func(ctx context.Context, rt string) (*oidc.Tokens, error) {
		<-release
		i := refreshes.Add(1) + 1
		return &oidc.Tokens{AccessToken: fmt.Sprintf("at-%d", i), RefreshToken: fmt.Sprintf("rt-%d", i),
			Expiry: e.clock.Now().Add(lifetime)}, nil
	}
	c := e.sessionCookie(t)
	setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))

	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() { codes <- doAs(e.h, http.MethodGet, "/x", nil, c).StatusCode })
	}
	// Everyone but the lock holder has found the lock taken.
	waitfor.True(t, 10*time.Second, "waiters", func() bool { return fs.lockedSeen.Load() >= n-1 })
	close(release)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Fatalf("a request failed: %d", code)
		}
	}
	if got := e.rp.refreshN.Load(); got != 1 {
		t.Fatalf("refreshes = %d, want 1", got)
	}
}

func TestStoreErrorNeverLogsOut(t *testing.T) {
	e, fs := newFaultyEnv(t, nil)
	c := e.sessionCookie(t)
	tk, _ := e.codec.Decode(c.Value)
	down := error(fmt.Errorf("redis: %w", errors.New("dial tcp: connection refused")))
	fs.getErr.Store(&down)

	for _, tt := range []struct {
		name   string
		method string
		path   string
		header http.Header
	}{
		{"navigation", "GET", "/app", navHeader},
		{"api", "POST", "/mcp", nil},
		{"session info", "GET", SessionPath, nil},
		{"logout", "POST", LogoutPath, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(e.h, tt.method, tt.path, tt.header, c)
			assertAPIError(t, resp, http.StatusServiceUnavailable, apierror.CodeSessionStoreDown)
			if got, want := resp.Header.Get("Retry-After"), strconv.Itoa(apierror.StoreDownRetryAfter); got != want {
				t.Errorf("Retry-After %q, want %q (every store outage's)", got, want)
			}
			if len(resp.Header.Values("Set-Cookie")) != 0 || resp.Header.Get("Location") != "" {
				t.Fatalf("store outage touched cookies or redirected: %v", resp.Header)
			}
		})
	}
	if fs.deletes.Load() != 0 {
		t.Fatal("a store error deleted the session")
	}
	fs.getErr.Store(nil)
	if _, err := fs.Store.GetSession(context.Background(), tk.ID()); err != nil {
		t.Fatalf("session lost: %v", err)
	}
	if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK {
		t.Fatalf("after recovery: %d", r.StatusCode)
	}
}

// staleStore serves GetSession from a frozen copy, as a replica's session
// cache may for up to its TTL after another replica refreshed; its
// GetSessionFresh reads the store, as the cache's does.
type staleStore struct {
	session.Store
	stale atomic.Pointer[session.Record]
}

func (s *staleStore) GetSession(ctx context.Context, id string) (session.Record, error) {
	if r := s.stale.Load(); r != nil && r.ID == id {
		return *r, nil
	}
	return s.Store.GetSession(ctx, id)
}

func (s *staleStore) GetSessionFresh(ctx context.Context, id string) (session.Record, error) {
	return s.Store.GetSession(ctx, id)
}

// TestRefreshReadsPastTheCache: a cached copy says the tokens are due, but
// another replica has refreshed them already; the reload under the refresh
// lock must see that (through GetSessionFresh) and not present the refresh
// token again, which a rotating provider would answer with invalid_grant.
func TestRefreshReadsPastTheCache(t *testing.T) {
	clk := fakeclock.New(time.Now())
	mem := session.NewMemory(session.MemoryOptions{Now: clk.Now})
	t.Cleanup(func() { _ = mem.Close() })
	st := &staleStore{Store: mem}
	e := newEnvWith(t, st, clk, nil)
	e.rp.refresh = rotatingRefresh(e.clock)
	c := e.sessionCookie(t)
	setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
	due, _ := e.storedPayload(t, c)
	st.stale.Store(&due)
	// "Another replica" refreshed: the stored tokens are no longer due.
	setTokenExpiry(t, e.a, mem, e.codec, c, e.clock.Now().Add(time.Hour))

	if r := do(e.h, http.MethodGet, "/x", nil, c); r.StatusCode != http.StatusOK {
		t.Fatalf("status %d", r.StatusCode)
	}
	if n := e.rp.refreshN.Load(); n != 0 {
		t.Fatalf("provider refreshes = %d, want 0: the reload under the lock read the cached copy", n)
	}
}
