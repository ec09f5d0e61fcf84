package oauth_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// TestRegistrationMetadataIsBounded: registration is anonymous, so what it
// stores is capped, and over-long metadata is refused with the RFC 7591
// error that names the problem (not silently cut).
func TestRegistrationMetadataIsBounded(t *testing.T) {
	uris := func(n int) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = fmt.Sprintf("https://app.example.com/cb%d", i)
		}
		return l
	}
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name       string
		body       map[string]any
		wantStatus int
		wantError  string
	}{
		{"ten redirect URIs", map[string]any{"redirect_uris": uris(10)}, 201, ""},
		{"eleven redirect URIs", map[string]any{"redirect_uris": uris(11)}, 400, "invalid_redirect_uri"},
		{"over-long redirect URI", map[string]any{"redirect_uris": []string{"https://app.example.com/" + long(1024)}}, 400, "invalid_redirect_uri"},
		{"over-long client_name", map[string]any{"redirect_uris": uris(1), "client_name": long(201)}, 400, "invalid_client_metadata"},
		{"over-long client_uri", map[string]any{"redirect_uris": uris(1), "client_uri": "https://app.example.com/" + long(500)}, 400, "invalid_client_metadata"},
		{"over-long scope", map[string]any{"redirect_uris": uris(1), "scope": long(1025)}, 400, "invalid_client_metadata"},
		{"too many grant types", map[string]any{"redirect_uris": uris(1), "grant_types": strings.Split(long(11), "")}, 400, "invalid_client_metadata"},
		{"body over 16 KiB", map[string]any{"redirect_uris": uris(1), "logo_uri": "https://app.example.com/" + long(17<<10)}, 400, "invalid_client_metadata"},
	}
	e := newMemEnv(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, m := e.register(tc.body)
			if resp.StatusCode != tc.wantStatus || tc.wantError != "" && m["error"] != tc.wantError {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, m["error"], tc.wantStatus, tc.wantError)
			}
			if tc.wantError != "" && m["error_description"] == "" {
				t.Fatal("no error_description")
			}
		})
	}
}

// TestUnusedRegistrationExpiresSooner: a registration no token was ever
// issued to is gone after a day (DefaultUnusedClientTTL); one in use lives
// for the client TTL.
func TestUnusedRegistrationExpiresSooner(t *testing.T) {
	var e *env
	m := session.NewMemory(session.MemoryOptions{Now: func() time.Time { return e.clock.Now() }})
	t.Cleanup(func() { _ = m.Close() })
	e = newEnv(t, m, 1)
	unused := e.registerPublic()
	used := e.registerPublic()
	v := oauth2.GenerateVerifier()
	code := e.code(used, v, "alice")
	if resp, body := e.token(codeForm(used, code, v)); resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	e.clock.Advance(oauth.DefaultUnusedClientTTL + time.Minute)
	known := func(id string) bool {
		resp, _ := e.authorize(authParams(id, oauth2.GenerateVerifier()))
		return resp.StatusCode == http.StatusFound
	}
	if known(unused) {
		t.Fatalf("a registration never used is still known after %v", oauth.DefaultUnusedClientTTL)
	}
	if !known(used) {
		t.Fatal("a registration in use expired with the unused TTL")
	}
}

// TestRateLimitsUseClientAddr: the registration and authorization request
// limits count per client address as Options.ClientAddr reports it (the
// server passes the trusted-proxy-aware one), not per connection peer.
func TestRateLimitsUseClientAddr(t *testing.T) {
	addrHeader := "X-Test-Client-Addr"
	e := newMemEnv(t, func(o *oauth.Options) {
		o.ClientAddr = func(r *http.Request) netip.Addr {
			a, _ := netip.ParseAddr(r.Header.Get(addrHeader))
			return a
		}
	})
	register := func(addr string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.url()+oauth.PathRegister,
			strings.NewReader(`{"redirect_uris":["`+loopCB+`"],"token_endpoint_auth_method":"none"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(addrHeader, addr)
		resp, _ := e.do(req)
		return resp
	}
	for i := range oauth.DefaultRegistrationRate.Burst {
		if resp := register("198.51.100.1"); resp.StatusCode != http.StatusCreated {
			t.Fatalf("registration %d: %d", i, resp.StatusCode)
		}
	}
	if resp := register("198.51.100.1"); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := register("198.51.100.2"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("another client address shares the bucket: %d", resp.StatusCode)
	}

	id := e.registerPublic()
	authorize := func(addr string) *http.Response {
		q := authParams(id, oauth2.GenerateVerifier())
		req, _ := http.NewRequest(http.MethodGet, e.url()+oauth.PathAuthorize+"?"+q.Encode(), nil)
		req.Header.Set(addrHeader, addr)
		resp, _ := e.do(req)
		return resp
	}
	for i := range oauth.DefaultRequestRate.Burst {
		if resp := authorize("198.51.100.1"); resp.StatusCode != http.StatusFound {
			t.Fatalf("authorize %d: %d", i, resp.StatusCode)
		}
	}
	if resp := authorize("198.51.100.1"); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("authorize over the limit: %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := authorize("198.51.100.2"); resp.StatusCode != http.StatusFound {
		t.Fatalf("another client address shares the authorize bucket: %d", resp.StatusCode)
	}
}

// TestAuthorizeParametersAreBounded: /authorize stores its parameters for
// someone who has not logged in, so each is capped and an over-long one is
// a 400 on the proxy's page, before anything is stored.
func TestAuthorizeParametersAreBounded(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	for _, tc := range []struct{ param, value string }{
		{"state", strings.Repeat("s", oauth.MaxStateLen+1)},
		{"scope", "mcp:tools " + strings.Repeat("x", 1024)},
		{"client_id", "https://client.example/" + strings.Repeat("c", 600)},
		{"code_challenge", strings.Repeat("c", 129)},
	} {
		t.Run(tc.param, func(t *testing.T) {
			q := authParams(id, oauth2.GenerateVerifier())
			q.Set(tc.param, tc.value)
			resp, body := e.authorize(q)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" ||
				!strings.Contains(string(body), `"error":"invalid_request"`) || !strings.Contains(string(body), tc.param) {
				t.Fatalf("got %d Location=%q %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
		})
	}
	q := authParams(id, oauth2.GenerateVerifier())
	q.Set("state", strings.Repeat("s", oauth.MaxStateLen))
	if resp, body := e.authorize(q); resp.StatusCode != http.StatusFound {
		t.Fatalf("state of exactly %d characters: %d %s", oauth.MaxStateLen, resp.StatusCode, body)
	}
}
