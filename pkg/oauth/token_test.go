package oauth_test

import (
	"testing"

	"golang.org/x/oauth2"
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
