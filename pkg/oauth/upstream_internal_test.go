package oauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
)

// TestLegacyRefreshTokenLivesOneSession: a refresh token issued before
// family state existed (a random value with the one-byte marker, during a
// rolling upgrade) keeps working, but its family ends one session.ttl later
// instead of living on without upstream checks.
func TestLegacyRefreshTokenLivesOneSession(t *testing.T) {
	clock := fakeclock.New(time.Now())
	store := session.NewMemory(session.MemoryOptions{Now: clock.Now})
	t.Cleanup(func() { _ = store.Close() })
	s, err := New(Options{
		Store:   store,
		BaseURL: func(*http.Request) string { return "https://mcp.example.com" },
		Now:     clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	client := &Client{ID: "legacy-client", AuthMethod: authNone, GrantTypes: []string{grantAuthCode, grantRefresh}}
	legacy := randomToken()
	g := refreshGrant{ClientID: client.ID, Resource: "https://mcp.example.com", Identity: &identity.Identity{Subject: "alice"},
		FamilyID: randomToken(), ExpiresAt: clock.Now().Add(DefaultRefreshTokenTTL)}
	if err := s.putJSON(t.Context(), keyRefresh+hashOf(legacy), g, DefaultRefreshTokenTTL); err != nil {
		t.Fatal(err)
	}
	if err := store.PutOnce(t.Context(), keyRefreshLive+hashOf(legacy), legacyMarker, DefaultRefreshTokenTTL); err != nil {
		t.Fatal(err)
	}
	refresh := func(rt string) (*tokenResponse, error) {
		form := url.Values{"grant_type": {grantRefresh}, "refresh_token": {rt}}
		r := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if err := r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		return s.redeemRefresh(r, client)
	}
	resp, err := refresh(legacy)
	if err != nil || resp.RefreshToken == "" {
		t.Fatalf("legacy refresh token: %v, %v; want new tokens", resp, err)
	}
	clock.Advance(DefaultSessionTTL - time.Minute)
	if resp, err = refresh(resp.RefreshToken); err != nil {
		t.Fatalf("refresh within one session.ttl: %v", err)
	}
	clock.Advance(2 * time.Minute)
	var te *tokenError
	if _, err := refresh(resp.RefreshToken); !errors.As(err, &te) || te.code != errInvalidGrant {
		t.Fatalf("refresh past one session.ttl after the upgrade: %v; want invalid_grant", err)
	}
}
