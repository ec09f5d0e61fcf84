package authn

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
)

// With the provider unreachable no login is started (503, no redirect, no
// state stored), and a callback whose code cannot be redeemed gets 503 too:
// never a redirect a browser could loop on.
func TestProviderUnreachable(t *testing.T) {
	down := fmt.Errorf("dial: %w", oidc.ErrUnreachable)
	tests := []struct {
		name   string
		path   string
		header http.Header
	}{
		{"explicit start", StartPath + "?rd=/x", nil},
		{"navigation without a session", "/x", navHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.rp.unreachable = down
			resp := do(e.h, http.MethodGet, tt.path, tt.header)
			assertAPIError(t, resp, http.StatusServiceUnavailable, apierror.CodeUpstreamUnavailable)
			if resp.Header.Get("Location") != "" || resp.Header.Get("Retry-After") == "" || cookieNamed(resp, e.a.stateCk) != nil {
				t.Fatalf("Location %q, Retry-After %q, state cookie %v; want none, a retry hint, none",
					resp.Header.Get("Location"), resp.Header.Get("Retry-After"), cookieNamed(resp, e.a.stateCk))
			}
		})
	}
	t.Run("callback", func(t *testing.T) {
		e := newEnv(t, nil)
		state, sc := startLogin(t, e.h, e.a, "/x")
		e.rp.mu.Lock()
		e.rp.unreachable = down
		e.rp.mu.Unlock()
		q := url.Values{"state": {state}, "code": {"code:" + state}}
		resp := do(e.h, http.MethodGet, DefaultCallbackPath+"?"+q.Encode(), navHeader, sc)
		assertAPIError(t, resp, http.StatusServiceUnavailable, apierror.CodeUpstreamUnavailable)
		if resp.Header.Get("Location") != "" || cookieNamed(resp, e.a.CookieName()) != nil {
			t.Fatalf("Location %q, session cookie %v; want neither", resp.Header.Get("Location"), cookieNamed(resp, e.a.CookieName()))
		}
	})
}
