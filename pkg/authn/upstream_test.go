package authn

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
)

// TestUpstreamLogin: a handler behind Middleware learns the session's
// upstream refresh and access tokens (after a refresh: the new ones) and
// its absolute end; without Middleware there is nothing to learn.
func TestUpstreamLogin(t *testing.T) {
	e := newEnv(t, nil)
	c := e.sessionCookie(t)
	type seen struct {
		rt   string
		ends time.Time
		ok   bool
		at   string
		atOK bool
	}
	var got []seen
	h := e.a.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		rt, ends, ok := e.a.UpstreamLogin(r.Context())
		at, atOK := UpstreamTokenFromContext(r.Context())
		got = append(got, seen{rt, ends, ok, at, atOK})
	}))
	last := func() seen {
		t.Helper()
		if len(got) == 0 {
			t.Fatal("the handler behind Middleware was not called")
		}
		return got[len(got)-1]
	}
	_, p := e.storedPayload(t, c)

	do(h, http.MethodGet, "/oauth2/consent", nil, c)
	if s := last(); !s.ok || s.rt != "rt-1" || !s.ends.Equal(p.ExpiresAt) {
		t.Fatalf("UpstreamLogin = %q, %v, %v; want rt-1, %v, true", s.rt, s.ends, s.ok, p.ExpiresAt)
	}
	if s := last(); !s.atOK || s.at == "" || s.at != p.AccessToken {
		t.Fatalf("UpstreamTokenFromContext = %q, %v; want the session's access token %q", s.at, s.atOK, p.AccessToken)
	}

	// The access token is about to expire: the middleware refreshes first,
	// and the handler sees the rotated token.
	e.rp.refresh = func(context.Context, string) (*oidc.Tokens, error) {
		return &oidc.Tokens{AccessToken: "at-2", RefreshToken: "rt-2", Expiry: e.clock.Now().Add(time.Hour)}, nil
	}
	setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now())
	do(h, http.MethodGet, "/oauth2/consent", nil, c)
	if s := last(); !s.ok || s.rt != "rt-2" {
		t.Fatalf("after a refresh UpstreamLogin = %q, %v; want rt-2, true", s.rt, s.ok)
	}
	if s := last(); !s.atOK || s.at != "at-2" {
		t.Fatalf("after a refresh UpstreamTokenFromContext = %q, %v; want at-2, true", s.at, s.atOK)
	}

	if rt, _, ok := e.a.UpstreamLogin(context.Background()); ok || rt != "" {
		t.Fatalf("without Middleware UpstreamLogin = %q, %v; want nothing", rt, ok)
	}
	if at, ok := UpstreamTokenFromContext(context.Background()); ok || at != "" {
		t.Fatalf("without Middleware UpstreamTokenFromContext = %q, %v; want nothing", at, ok)
	}
}
