package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
)

// TestAuthorizeErrorsStayOnTheProxy: anyone may register a redirect URI, so
// until a user has logged in and approved the client, an error must not
// send the browser there (RFC 9700 §4.11.2): it is shown on a page of the
// proxy instead. A browser gets HTML with the text escaped; an API caller
// gets the JSON error.
func TestAuthorizeErrorsStayOnTheProxy(t *testing.T) {
	const evil = "https://evil.example/landing"
	e := newMemEnv(t)
	resp, m := e.register(map[string]any{"redirect_uris": []string{evil}, "token_endpoint_auth_method": "none", "client_name": "<b>Evil</b>"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %v", resp.StatusCode, m)
	}
	id := m["client_id"].(string)
	params := func() url.Values {
		q := authParams(id, oauth2.GenerateVerifier())
		q.Set("redirect_uri", evil)
		q.Set("state", `"><script>alert(1)</script>`)
		return q
	}
	tests := []struct {
		name   string
		mutate func(url.Values)
		code   string
	}{
		{"bad response_type", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"foreign resource", func(q url.Values) { q.Set("resource", "https://other.example/mcp") }, "invalid_target"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/browser", func(t *testing.T) {
			q := params()
			tc.mutate(q)
			req, _ := http.NewRequest(http.MethodGet, e.url()+oauth.PathAuthorize+"?"+q.Encode(), nil)
			req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
			req.Header.Set("Sec-Fetch-Mode", "navigate")
			resp, body := e.do(req)
			if loc := resp.Header.Get("Location"); loc != "" || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("got %d Location=%q, want a 400 page on the proxy", resp.StatusCode, loc)
			}
			page := string(body)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Fatalf("Content-Type %q, want text/html for a browser", ct)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Frame-Options") != "DENY" ||
				!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
				t.Fatalf("page headers %v", resp.Header)
			}
			if !strings.Contains(page, tc.code) || strings.Contains(page, "<script>") || strings.Contains(page, "evil.example/landing?") {
				t.Fatalf("page does not name %s, or is not escaped, or links the redirect:\n%s", tc.code, page)
			}
		})
		t.Run(tc.name+"/api", func(t *testing.T) {
			q := params()
			tc.mutate(q)
			resp, body := e.authorize(q)
			if loc := resp.Header.Get("Location"); loc != "" || resp.StatusCode != http.StatusBadRequest ||
				!strings.Contains(string(body), `"error":"`+tc.code+`"`) {
				t.Fatalf("got %d Location=%q %s, want a 400 JSON %s", resp.StatusCode, loc, body, tc.code)
			}
		})
	}

	// After login and consent the client is known to the user: their own
	// "Deny" goes back to the client as access_denied (RFC 6749 4.1.2.1).
	t.Run("deny on the consent page still redirects", func(t *testing.T) {
		q := params()
		q.Set("state", "st-1")
		resp, body := e.authorize(q)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, issuer+oauth.PathConsent) {
			t.Fatalf("authorize: %d %q %s", resp.StatusCode, loc, body)
		}
		r, csrf, _ := e.consentPage(loc, "alice")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("consent page %d", r.StatusCode)
		}
		u, _ := url.Parse(loc)
		r, _ = e.consentPost(u.Query().Get("request"), csrf, "deny", "alice")
		back, _ := url.Parse(r.Header.Get("Location"))
		if (r.StatusCode != http.StatusFound && r.StatusCode != http.StatusSeeOther) || back.Host != "evil.example" || back.Query().Get("error") != "access_denied" {
			t.Fatalf("deny: %d %q", r.StatusCode, r.Header.Get("Location"))
		}
	})
}
