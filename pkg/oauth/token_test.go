package oauth_test

import (
	"testing"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// TestBadCodeRedemptionKeepsCode: a token request the code cannot satisfy
// (wrong PKCE verifier, wrong redirect_uri) is refused without spending the
// code, so the client's correct request still succeeds. Only a successful
// check consumes it (as on the refresh path).
func TestBadCodeRedemptionKeepsCode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(f map[string][]string)
	}{
		{"wrong verifier", func(f map[string][]string) { f["code_verifier"] = []string{oauth2.GenerateVerifier()} }},
		{"missing verifier", func(f map[string][]string) { delete(f, "code_verifier") }},
		{"wrong redirect_uri", func(f map[string][]string) { f["redirect_uri"] = []string{loopCB + "/other"} }},
		{"wrong resource", func(f map[string][]string) { f["resource"] = []string{"https://evil.example.com/mcp"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newMemEnv(t)
			id := e.registerPublic()
			v := oauth2.GenerateVerifier()
			code := e.code(id, v, "alice")
			bad := codeForm(id, code, v)
			tc.mutate(bad)
			resp, m := e.token(bad)
			if resp.StatusCode != 400 {
				t.Fatalf("bad redemption: %d %v, want 400", resp.StatusCode, m)
			}
			resp, m = e.token(codeForm(id, code, v))
			if resp.StatusCode != 200 || m["access_token"] == nil {
				t.Fatalf("correct redemption after a refused one: %d %v, want 200 with tokens", resp.StatusCode, m)
			}
		})
	}
}

// TestFamilyRevocationCoversEveryAccessToken: reusing a rotated refresh
// token revokes every access token the family issued, not only its newest,
// on every replica (they share the store).
func TestFamilyRevocationCoversEveryAccessToken(t *testing.T) {
	m := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = m.Close() })
	e := newEnv(t, m, 2)
	id := e.registerPublic()
	v := oauth2.GenerateVerifier()
	resp, first := e.token(codeForm(id, e.code(id, v, "alice"), v))
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: %d %v", resp.StatusCode, first)
	}
	resp, second := e.token(refreshForm(id, first["refresh_token"].(string)))
	if resp.StatusCode != 200 {
		t.Fatalf("refresh: %d %v", resp.StatusCode, second)
	}
	// An unrelated family stays valid.
	resp, other := e.token(codeForm(id, e.code(id, v, "bob"), v))
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: %d %v", resp.StatusCode, other)
	}
	resp, body := e.token(refreshForm(id, first["refresh_token"].(string)))
	wantOAuthError(t, resp, body, 400, "invalid_grant")
	for _, s := range e.srvs {
		for name, tok := range map[string]any{"first": first["access_token"], "second": second["access_token"]} {
			c := verifyAccess(t, s, tok.(string))
			if c.FamilyID == "" {
				t.Fatalf("%s access token has no fid claim", name)
			}
			if revoked, err := s.IsRevoked(t.Context(), c.ID, c.FamilyID); err != nil || !revoked {
				t.Errorf("%s access token after the family was revoked: IsRevoked = %v, %v; want true", name, revoked, err)
			}
		}
		c := verifyAccess(t, s, other["access_token"].(string))
		if revoked, err := s.IsRevoked(t.Context(), c.ID, c.FamilyID); err != nil || revoked {
			t.Errorf("another family's access token: IsRevoked = %v, %v; want false", revoked, err)
		}
	}
}
