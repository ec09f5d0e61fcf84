package oauth_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/ratelimit"
)

func TestRegistration(t *testing.T) {
	tests := []struct {
		name       string
		body       map[string]any
		wantStatus int
		wantError  string
		wantGrants string
	}{
		{"public loopback", map[string]any{"redirect_uris": []string{"http://127.0.0.1/cb", "http://[::1]:9/cb", "http://localhost:1234/cb"}, "token_endpoint_auth_method": "none"}, 201, "", "authorization_code,refresh_token"},
		{"narrowed grants", map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "grant_types": []string{"authorization_code", "client_credentials", "implicit"}}, 201, "", "authorization_code"},
		{"custom scheme for native apps", map[string]any{"redirect_uris": []string{"cursor://anysphere.cursor-mcp/oauth/callback"}, "token_endpoint_auth_method": "none"}, 201, "", "authorization_code,refresh_token"},
		{"http non-loopback", map[string]any{"redirect_uris": []string{"http://app.example.com/cb"}}, 400, "invalid_redirect_uri", ""},
		{"fragment", map[string]any{"redirect_uris": []string{"https://app.example.com/cb#x"}}, 400, "invalid_redirect_uri", ""},
		{"javascript scheme", map[string]any{"redirect_uris": []string{"javascript:alert(1)"}}, 400, "invalid_redirect_uri", ""},
		{"no redirect uris", map[string]any{"client_name": "x"}, 400, "invalid_redirect_uri", ""},
		{"unsupported auth method", map[string]any{"redirect_uris": []string{"https://a.example/cb"}, "token_endpoint_auth_method": "private_key_jwt"}, 400, "invalid_client_metadata", ""},
		{"user info in redirect URI", map[string]any{"redirect_uris": []string{"https://user@app.example.com/cb"}}, 400, "invalid_redirect_uri", ""},
		{"response_types without code", map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "response_types": []string{"token"}}, 400, "invalid_client_metadata", ""},
	}
	e := newMemEnv(t, withRegistrationRate(ratelimit.Rate{PerMinute: 1000, Burst: 1000}))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, m := e.register(tc.body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d %v, want %d", resp.StatusCode, m, tc.wantStatus)
			}
			if tc.wantError != "" {
				if m["error"] != tc.wantError {
					t.Fatalf("error = %v, want %s", m["error"], tc.wantError)
				}
				return
			}
			if got := joinAny(m["grant_types"]); got != tc.wantGrants {
				t.Fatalf("grant_types = %s, want %s", got, tc.wantGrants)
			}
			_, hasSecret := m["client_secret"]
			if public := m["token_endpoint_auth_method"] == "none"; public == hasSecret {
				t.Fatalf("public=%v but secret present=%v", public, hasSecret)
			}
		})
	}
}

func TestRegistrationNeedsJSON(t *testing.T) {
	e := newMemEnv(t)
	req, _ := http.NewRequest(http.MethodPost, e.url()+oauth.PathRegister,
		strings.NewReader(`{"redirect_uris":["https://app.example.com/cb"]}`))
	req.Header.Set("Content-Type", "text/plain")
	resp, body := e.do(req)
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"invalid_client_metadata"`) {
		t.Fatalf("text/plain registration: %d %s", resp.StatusCode, body)
	}
}

func TestRegistrationRateLimit(t *testing.T) {
	e := newMemEnv(t, withRegistrationRate(ratelimit.Rate{PerMinute: 6, Burst: 2}))
	body := map[string]any{"redirect_uris": []string{loopCB}, "token_endpoint_auth_method": "none"}
	for i := range 2 {
		if resp, m := e.register(body); resp.StatusCode != 201 {
			t.Fatalf("registration %d: %d %v", i, resp.StatusCode, m)
		}
	}
	resp, _ := e.register(body)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third registration: %d, want 429", resp.StatusCode)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 10 {
		t.Fatalf("Retry-After = %q", resp.Header.Get("Retry-After"))
	}
	e.clock.Advance(10 * time.Second)
	if resp, _ := e.register(body); resp.StatusCode != 201 {
		t.Fatalf("after refill: %d", resp.StatusCode)
	}
}

func TestAuthorizeRejections(t *testing.T) {
	e := newMemEnv(t)
	resp, m := e.register(map[string]any{"redirect_uris": []string{loopCB, "https://app.example.com:8443/cb"}, "token_endpoint_auth_method": "none"})
	if resp.StatusCode != 201 {
		t.Fatal(m)
	}
	id := m["client_id"].(string)
	v := oauth2.GenerateVerifier()
	tests := []struct {
		name   string
		mutate func(q url.Values)
		// redirectErr is the error sent to the client; "" means an error
		// page (no redirect) with pageErr. /authorize never redirects an
		// error (RFC 9700 §4.11.2; see TestAuthorizeErrorsStayOnTheProxy).
		redirectErr string
		pageErr     string
	}{
		{"control: valid request goes to consent", func(url.Values) {}, "", ""},
		{"loopback port may vary (RFC 8252)", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:50999/callback") }, "", ""},
		{"unknown client", func(q url.Values) { q.Set("client_id", "nope") }, "", "invalid_client"},
		{"redirect trailing slash", func(q url.Values) { q.Set("redirect_uri", loopCB+"/") }, "", "invalid_request"},
		{"redirect other port non-loopback", func(q url.Values) { q.Set("redirect_uri", "https://app.example.com:9443/cb") }, "", "invalid_request"},
		{"redirect other path", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:45123/other") }, "", "invalid_request"},
		{"loopback host swap", func(q url.Values) { q.Set("redirect_uri", "http://localhost:45123/callback") }, "", "invalid_request"},
		{"loopback query differs", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:50999/callback?x=1") }, "", "invalid_request"},
		{"loopback scheme differs", func(q url.Values) { q.Set("redirect_uri", "https://127.0.0.1:50999/callback") }, "", "invalid_request"},
		{"repeated client_id", func(q url.Values) { q.Add("client_id", q.Get("client_id")) }, "", "invalid_request"},
		{"missing PKCE challenge", func(q url.Values) { q.Del("code_challenge") }, "", "invalid_request"},
		{"short PKCE challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, "", "invalid_request"},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "", "invalid_request"},
		{"PKCE method omitted (defaults to plain)", func(q url.Values) { q.Del("code_challenge_method") }, "", "invalid_request"},
		{"resource mismatch", func(q url.Values) { q.Set("resource", "https://evil.example.com/mcp") }, "", "invalid_target"},
		{"two resources", func(q url.Values) { q.Add("resource", resource+"/other") }, "", "invalid_target"},
		{"response_type token", func(q url.Values) { q.Set("response_type", "token") }, "", "unsupported_response_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := authParams(id, v)
			tc.mutate(q)
			resp, body := e.authorize(q)
			loc := resp.Header.Get("Location")
			switch {
			case tc.pageErr != "":
				if resp.StatusCode != 400 || loc != "" || !strings.Contains(string(body), `"error":"`+tc.pageErr+`"`) {
					t.Fatalf("got %d Location=%q %s, want a 400 %s error page", resp.StatusCode, loc, body, tc.pageErr)
				}
			case tc.redirectErr != "":
				u, _ := url.Parse(loc)
				if resp.StatusCode != 302 || u.Query().Get("error") != tc.redirectErr || u.Query().Get("state") != "st-123" || u.Query().Get("iss") != issuer {
					t.Fatalf("got %d Location=%q, want error=%s", resp.StatusCode, loc, tc.redirectErr)
				}
			default:
				if resp.StatusCode != 302 || !strings.HasPrefix(loc, issuer+oauth.PathConsent+"?request=") {
					t.Fatalf("got %d Location=%q %s, want the consent step", resp.StatusCode, loc, body)
				}
			}
		})
	}
}

func TestResourceDefaultsWhenOmitted(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	v := oauth2.GenerateVerifier()
	q := authParams(id, v)
	q.Del("resource")
	code, _ := e.codeWith(q, "alice")
	f := codeForm(id, code, v)
	f.Del("resource")
	resp, m := e.token(f)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
	if c := verifyAccess(t, e.srvs[0], m["access_token"].(string)); c.Audience != resource {
		t.Fatalf("aud = %q, want the default resource", c.Audience)
	}
}

func TestConsent(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	start := func() (string, string) {
		resp, body := e.authorize(authParams(id, oauth2.GenerateVerifier()))
		if resp.StatusCode != 302 {
			t.Fatalf("authorize: %d %s", resp.StatusCode, body)
		}
		loc := resp.Header.Get("Location")
		u, _ := url.Parse(loc)
		return loc, u.Query().Get("request")
	}

	t.Run("page is framed-proof and bound to the user", func(t *testing.T) {
		loc, reqID := start()
		resp, csrf, page := e.consentPage(loc, "alice")
		if resp.StatusCode != 200 || csrf == "" {
			t.Fatalf("consent page: %d", resp.StatusCode)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Fatalf("missing anti-framing headers: %v", resp.Header)
		}
		if !strings.Contains(page, "Test Client") || !strings.Contains(page, "127.0.0.1:45123") || !strings.Contains(page, "mcp:tools") {
			t.Fatalf("page lacks client name, redirect host or scope:\n%s", page)
		}
		// CSRF token mismatch.
		if r, _ := e.consentPost(reqID, "wrong-token", "approve", "alice"); r.StatusCode != http.StatusForbidden {
			t.Fatalf("CSRF mismatch: %d, want 403", r.StatusCode)
		}
		// Another user with the right token.
		if r, _ := e.consentPost(reqID, csrf, "approve", "mallory"); r.StatusCode != http.StatusForbidden {
			t.Fatalf("other user: %d, want 403", r.StatusCode)
		}
		if r, _, _ := e.consentPage(loc, "mallory"); r.StatusCode != http.StatusForbidden {
			t.Fatalf("other user opening the page: %d, want 403", r.StatusCode)
		}
		// Deny.
		r, _ := e.consentPost(reqID, csrf, "deny", "alice")
		if cb := callback(t, r); cb.Get("error") != "access_denied" || cb.Get("state") != "st-123" {
			t.Fatalf("deny callback %v", cb)
		}
		// The request is answered once.
		if r, _ := e.consentPost(reqID, csrf, "approve", "alice"); r.StatusCode != 400 {
			t.Fatalf("second answer: %d, want 400", r.StatusCode)
		}
	})

	t.Run("no identity", func(t *testing.T) {
		loc, _ := start()
		if r, _, _ := e.consentPage(loc, ""); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous consent: %d", r.StatusCode)
		}
	})

	t.Run("approval is remembered per user and client", func(t *testing.T) {
		loc, reqID := start()
		_, csrf, _ := e.consentPage(loc, "bob")
		r, _ := e.consentPost(reqID, csrf, "approve", "bob")
		if cb := callback(t, r); cb.Get("code") == "" || cb.Get("iss") != issuer {
			t.Fatalf("approve callback %v", cb)
		}
		loc2, _ := start()
		r2, _, _ := e.consentPage(loc2, "bob")
		if cb := callback(t, r2); cb.Get("code") == "" {
			t.Fatalf("remembered consent did not issue a code: %v", cb)
		}
		loc3, _ := start()
		if r3, csrf3, _ := e.consentPage(loc3, "carol"); r3.StatusCode != 200 || csrf3 == "" {
			t.Fatalf("another user must be asked: %d", r3.StatusCode)
		}
	})
}

func TestTokenRejections(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	other := e.registerPublic()
	resp, m := e.register(map[string]any{"redirect_uris": []string{loopCB}, "token_endpoint_auth_method": "client_secret_post"})
	if resp.StatusCode != 201 {
		t.Fatal(m)
	}
	confID, confSecret := m["client_id"].(string), m["client_secret"].(string)

	tests := []struct {
		name    string
		client  string
		mutate  func(f url.Values)
		advance time.Duration
		status  int
		err     string
	}{
		{"control: valid exchange", id, func(url.Values) {}, 0, 200, ""},
		{"wrong verifier", id, func(f url.Values) { f.Set("code_verifier", oauth2.GenerateVerifier()) }, 0, 400, "invalid_grant"},
		{"missing verifier", id, func(f url.Values) { f.Del("code_verifier") }, 0, 400, "invalid_grant"},
		{"redirect_uri mismatch", id, func(f url.Values) { f.Set("redirect_uri", loopCB+"/") }, 0, 400, "invalid_grant"},
		{"code bound to another client", id, func(f url.Values) { f.Set("client_id", other) }, 0, 400, "invalid_grant"},
		{"resource mismatch", id, func(f url.Values) { f.Set("resource", "https://evil.example.com/") }, 0, 400, "invalid_target"},
		{"expired code", id, func(url.Values) {}, oauth.DefaultCodeTTL + time.Second, 400, "invalid_grant"},
		{"unknown client", id, func(f url.Values) { f.Set("client_id", "nope") }, 0, 401, "invalid_client"},
		{"unsupported grant", id, func(f url.Values) { f.Set("grant_type", "password") }, 0, 400, "unsupported_grant_type"},
		{"repeated code", id, func(f url.Values) { f.Add("code", "other") }, 0, 400, "invalid_request"},
		{"public client sends a secret", id, func(f url.Values) { f.Set("client_secret", "guess") }, 0, 401, "invalid_client"},
		{"confidential: control", confID, func(f url.Values) { f.Set("client_secret", confSecret) }, 0, 200, ""},
		{"confidential: wrong secret", confID, func(f url.Values) { f.Set("client_secret", confSecret+"x") }, 0, 401, "invalid_client"},
		{"confidential: no secret", confID, func(url.Values) {}, 0, 401, "invalid_client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			code := e.code(tc.client, v, "alice")
			e.clock.Advance(tc.advance)
			f := codeForm(tc.client, code, v)
			tc.mutate(f)
			resp, m := e.token(f)
			if tc.err == "" {
				if resp.StatusCode != 200 || m["access_token"] == nil || resp.Header.Get("Cache-Control") != "no-store" {
					t.Fatalf("got %d %v", resp.StatusCode, m)
				}
				return
			}
			wantOAuthError(t, resp, m, tc.status, tc.err)
		})
	}
}

func TestCodeReplayRevokesIssuedTokens(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	v := oauth2.GenerateVerifier()
	code := e.code(id, v, "alice")
	resp, first := e.token(codeForm(id, code, v))
	if resp.StatusCode != 200 {
		t.Fatalf("first redemption: %d %v", resp.StatusCode, first)
	}
	resp, m := e.token(codeForm(id, code, v))
	wantOAuthError(t, resp, m, 400, "invalid_grant")
	jti := verifyAccess(t, e.srvs[0], first["access_token"].(string)).ID
	if revoked, err := e.srvs[0].IsRevoked(t.Context(), jti); err != nil || !revoked {
		t.Fatalf("access token from replayed code not revoked: %v %v", revoked, err)
	}
	resp, m = e.token(refreshForm(id, first["refresh_token"].(string)))
	wantOAuthError(t, resp, m, 400, "invalid_grant")
}

func TestRefreshRejections(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	other := e.registerPublic()
	issue := func() map[string]any {
		v := oauth2.GenerateVerifier()
		resp, m := e.token(codeForm(id, e.code(id, v, "alice"), v))
		if resp.StatusCode != 200 {
			t.Fatalf("exchange: %d %v", resp.StatusCode, m)
		}
		return m
	}

	t.Run("reuse revokes the family", func(t *testing.T) {
		rt1 := issue()["refresh_token"].(string)
		resp, m := e.token(refreshForm(id, rt1))
		if resp.StatusCode != 200 {
			t.Fatalf("rotation: %d %v", resp.StatusCode, m)
		}
		rt2 := m["refresh_token"].(string)
		at2 := m["access_token"].(string)
		resp, m = e.token(refreshForm(id, rt1))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
		resp, m = e.token(refreshForm(id, rt2))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
		if revoked, _ := e.srvs[0].IsRevoked(t.Context(), verifyAccess(t, e.srvs[0], at2).ID); !revoked {
			t.Fatal("newest access token of the family not revoked")
		}
	})
	t.Run("after revoke", func(t *testing.T) {
		rt := issue()["refresh_token"].(string)
		if resp, _ := e.postForm(oauth.PathRevoke, url.Values{"client_id": {id}, "token": {rt}}); resp.StatusCode != 200 {
			t.Fatalf("revoke: %d", resp.StatusCode)
		}
		resp, m := e.token(refreshForm(id, rt))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
	})
	t.Run("other client", func(t *testing.T) {
		rt := issue()["refresh_token"].(string)
		resp, m := e.token(refreshForm(other, rt))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
		if resp, _ := e.token(refreshForm(id, rt)); resp.StatusCode != 200 {
			t.Fatalf("the right client must still refresh: %d", resp.StatusCode)
		}
	})
	t.Run("widen resource", func(t *testing.T) {
		f := refreshForm(id, issue()["refresh_token"].(string))
		f.Set("resource", "https://evil.example.com/mcp")
		resp, m := e.token(f)
		wantOAuthError(t, resp, m, 400, "invalid_target")
	})
	t.Run("widen scope", func(t *testing.T) {
		f := refreshForm(id, issue()["refresh_token"].(string))
		f.Set("scope", "mcp:tools mcp:resources")
		resp, m := e.token(f)
		wantOAuthError(t, resp, m, 400, "invalid_scope")
	})
	t.Run("expired", func(t *testing.T) {
		rt := issue()["refresh_token"].(string)
		e.clock.Advance(oauth.DefaultRefreshTokenTTL + time.Second)
		resp, m := e.token(refreshForm(id, rt))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
	})
}

func TestRevokeUnknownTokenIs200(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	for _, tok := range []string{"garbage", "eyJhbGciOiJub25lIn0.e30."} {
		if resp, _ := e.postForm(oauth.PathRevoke, url.Values{"client_id": {id}, "token": {tok}}); resp.StatusCode != 200 {
			t.Fatalf("revoke %q: %d", tok, resp.StatusCode)
		}
	}
	if resp, m := e.postForm(oauth.PathRevoke, url.Values{"client_id": {"nope"}, "token": {"x"}}); resp.StatusCode != 401 {
		t.Fatalf("unknown client: %d %v", resp.StatusCode, m)
	}
}

// TestRedirectURIOmitted: a client with one registered redirect URI may omit
// it at /authorize, and then need not repeat it at /token (RFC 6749 4.1.3);
// one that sent it must repeat it.
func TestRedirectURIOmitted(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	v := oauth2.GenerateVerifier()
	q := authParams(id, v)
	q.Del("redirect_uri")
	code, _ := e.codeWith(q, "alice")
	f := codeForm(id, code, v)
	f.Del("redirect_uri")
	if resp, m := e.token(f); resp.StatusCode != 200 {
		t.Fatalf("omitted in both: %d %v", resp.StatusCode, m)
	}
	v = oauth2.GenerateVerifier()
	f = codeForm(id, e.code(id, v, "alice"), v)
	f.Del("redirect_uri")
	resp, m := e.token(f)
	wantOAuthError(t, resp, m, 400, "invalid_grant")
}

// TestClientAuthOneMethod: RFC 6749 2.3 allows one authentication method per
// request, and the Basic and form identities must not disagree.
func TestClientAuthOneMethod(t *testing.T) {
	e := newMemEnv(t)
	resp, m := e.register(map[string]any{"redirect_uris": []string{loopCB}})
	if resp.StatusCode != 201 {
		t.Fatal(m)
	}
	confID, secret := m["client_id"].(string), m["client_secret"].(string)
	other := e.registerPublic()
	tests := []struct {
		name   string
		mutate func(f url.Values)
		ok     bool
	}{
		{"control: Basic only", func(f url.Values) { f.Del("client_id") }, true},
		{"Basic with the same client_id in the form", func(url.Values) {}, true},
		{"Basic and client_secret in the form", func(f url.Values) { f.Set("client_secret", secret) }, false},
		{"Basic and another client_id in the form", func(f url.Values) { f.Set("client_id", other) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			f := codeForm(confID, e.code(confID, v, "alice"), v)
			tc.mutate(f)
			resp, m := e.token(f, confID, secret)
			if tc.ok {
				if resp.StatusCode != 200 {
					t.Fatalf("%d %v", resp.StatusCode, m)
				}
				return
			}
			wantOAuthError(t, resp, m, 401, "invalid_client")
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
				t.Fatalf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestRevokeOtherClientsTokens: a client cannot revoke tokens issued to
// another client (RFC 7009 2.1); the endpoint still answers 200.
func TestRevokeOtherClientsTokens(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	other := e.registerPublic()
	v := oauth2.GenerateVerifier()
	resp, m := e.token(codeForm(id, e.code(id, v, "alice"), v))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	for _, tok := range []string{at, rt} {
		if resp, _ := e.postForm(oauth.PathRevoke, url.Values{"client_id": {other}, "token": {tok}}); resp.StatusCode != 200 {
			t.Fatalf("revoke by another client: %d", resp.StatusCode)
		}
	}
	if revoked, err := e.srvs[0].IsRevoked(t.Context(), verifyAccess(t, e.srvs[0], at).ID); err != nil || revoked {
		t.Fatalf("another client revoked the access token: %v %v", revoked, err)
	}
	if resp, m := e.token(refreshForm(id, rt)); resp.StatusCode != 200 {
		t.Fatalf("another client revoked the refresh token: %d %v", resp.StatusCode, m)
	}
}

// TestRefreshBadRequestKeepsToken: a refresh refused for its parameters
// does not spend the refresh token.
func TestRefreshBadRequestKeepsToken(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	v := oauth2.GenerateVerifier()
	resp, m := e.token(codeForm(id, e.code(id, v, "alice"), v))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
	rt := m["refresh_token"].(string)
	f := refreshForm(id, rt)
	f.Set("scope", "mcp:resources") // offered, but not granted
	resp, m = e.token(f)
	wantOAuthError(t, resp, m, 400, "invalid_scope")
	f = refreshForm(id, rt)
	f.Set("resource", "https://evil.example.com/mcp")
	resp, m = e.token(f)
	wantOAuthError(t, resp, m, 400, "invalid_target")
	f = refreshForm(id, rt)
	f.Set("scope", "mcp:tools mcp:tools")
	if resp, m := e.token(f); resp.StatusCode != 200 || m["scope"] != "mcp:tools" {
		t.Fatalf("refresh after refused requests: %d %v", resp.StatusCode, m)
	}
}

// TestConsentExpiryAndWidening: a pending request expires by the server's
// clock, and remembered consent covers only what was approved.
func TestConsentExpiryAndWidening(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	start := func(scope string) string {
		q := authParams(id, oauth2.GenerateVerifier())
		q.Set("scope", scope)
		resp, body := e.authorize(q)
		if resp.StatusCode != 302 {
			t.Fatalf("authorize: %d %s", resp.StatusCode, body)
		}
		return resp.Header.Get("Location")
	}
	loc := start("mcp:tools")
	e.clock.Advance(oauth.DefaultRequestTTL + time.Second)
	if r, _, _ := e.consentPage(loc, "alice"); r.StatusCode != 400 {
		t.Fatalf("expired request: %d, want 400", r.StatusCode)
	}
	loc = start("mcp:tools")
	_, csrf, _ := e.consentPage(loc, "alice")
	u, _ := url.Parse(loc)
	if cb := callback(t, first(e.consentPost(u.Query().Get("request"), csrf, "approve", "alice"))); cb.Get("code") == "" {
		t.Fatalf("approve: %v", cb)
	}
	if r, csrf, _ := e.consentPage(start("mcp:tools mcp:resources"), "alice"); r.StatusCode != 200 || csrf == "" {
		t.Fatalf("a wider scope must be asked again: %d", r.StatusCode)
	}
}

func first(r *http.Response, _ []byte) *http.Response { return r }

// TestRefreshRepeatsRequestedScope: clients such as mcp-remote repeat the
// scope they asked for at /authorize on every refresh, including scopes the
// server does not offer and so never granted. Those are dropped as at
// /authorize; only an offered scope outside the grant is refused.
func TestRefreshRepeatsRequestedScope(t *testing.T) {
	cases := []struct {
		name       string
		offered    []string
		authorize  string
		refresh    string
		wantStatus int
		wantScope  string // granted on refresh; "" means none (no scope in the response)
	}{
		{name: "no scopes offered, OIDC scopes repeated", authorize: "openid email profile", refresh: "openid email profile", wantStatus: 200},
		{name: "original request repeated", offered: []string{"mcp:tools", "mcp:resources"}, authorize: "openid email mcp:tools", refresh: "openid email mcp:tools", wantStatus: 200, wantScope: "mcp:tools"},
		{name: "unoffered scope with a narrower grant", offered: []string{"mcp:tools", "mcp:resources"}, authorize: "mcp:tools mcp:resources", refresh: "offline_access mcp:tools", wantStatus: 200, wantScope: "mcp:tools"},
		{name: "whitespace scope keeps the grant", offered: []string{"mcp:tools", "mcp:resources"}, authorize: "mcp:tools", refresh: "  ", wantStatus: 200, wantScope: "mcp:tools"},
		{name: "offered scope outside the grant", offered: []string{"mcp:tools", "mcp:resources"}, authorize: "openid mcp:tools", refresh: "openid mcp:tools mcp:resources", wantStatus: 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newMemEnv(t, func(o *oauth.Options) { o.Scopes = tc.offered })
			id := e.registerPublic()
			v := oauth2.GenerateVerifier()
			q := authParams(id, v)
			q.Set("scope", tc.authorize)
			code, _ := e.codeWith(q, "alice")
			resp, m := e.token(codeForm(id, code, v))
			if resp.StatusCode != 200 {
				t.Fatalf("exchange: %d %v", resp.StatusCode, m)
			}
			f := refreshForm(id, m["refresh_token"].(string))
			f.Set("scope", tc.refresh)
			resp, m = e.token(f)
			if tc.wantStatus != 200 {
				wantOAuthError(t, resp, m, tc.wantStatus, "invalid_scope")
				return
			}
			if resp.StatusCode != 200 {
				t.Fatalf("refresh: %d %v", resp.StatusCode, m)
			}
			if got, _ := m["scope"].(string); got != tc.wantScope {
				t.Errorf("response scope = %q, want %q", got, tc.wantScope)
			}
			if got := verifyAccess(t, e.srvs[0], m["access_token"].(string)).Scope; got != tc.wantScope {
				t.Errorf("access token scope = %q, want %q", got, tc.wantScope)
			}
		})
	}
}

// TestShortVerifierRefused: RFC 7636 4.1 verifiers have 43 to 128
// characters; a client that derived its challenge from a shorter (guessable)
// one is refused even though the hash matches.
func TestShortVerifierRefused(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	const short = "abc"
	code := e.code(id, short, "alice")
	resp, m := e.token(codeForm(id, code, short))
	wantOAuthError(t, resp, m, 400, "invalid_grant")
}
