package oauth_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/oauthex"
	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
)

func TestFullFlow(t *testing.T) {
	tests := []struct {
		name  string
		store func(t *testing.T) (session.Store, *redisserver.Server)
	}{
		{"memory", func(t *testing.T) (session.Store, *redisserver.Server) {
			m := session.NewMemory(session.MemoryOptions{})
			t.Cleanup(func() { _ = m.Close() })
			return m, nil
		}},
		{"redis", func(t *testing.T) (session.Store, *redisserver.Server) {
			rs := redisserver.Start(t)
			st, err := session.NewRedis(session.RedisOptions{URL: rs.URL()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st, rs
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, rs := tc.store(t)
			e := newEnv(t, store, 2)
			secrets := runFlow(t, e)
			if rs != nil {
				assertNoSecretsInRedis(t, rs, secrets)
			}
		})
	}
}

// sdkClient reaches loopback test servers: the SDK's discovery transport
// refuses non-public addresses unless the caller brings its own dialer.
func sdkClient() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// runFlow drives register → authorize → consent → token → refresh → revoke,
// alternating replicas on every step, and returns every secret it saw.
func runFlow(t *testing.T, e *env) []string {
	ctx := t.Context()
	// Discovery and registration with the official MCP Go SDK helpers.
	meta, err := oauthex.GetAuthServerMeta(ctx, e.url()+"/.well-known/oauth-authorization-server", issuer, sdkClient())
	if err != nil || meta == nil {
		t.Fatalf("GetAuthServerMeta: %v %v", meta, err)
	}
	if meta.TokenEndpoint != issuer+oauth.PathToken || !meta.ClientIDMetadataDocumentSupported {
		t.Fatalf("unexpected metadata %+v", meta)
	}
	reg, err := oauthex.RegisterClient(ctx, e.url()+oauth.PathRegister, &oauthex.ClientRegistrationMetadata{
		RedirectURIs: []string{loopCB}, ClientName: "SDK client", TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes: []string{"authorization_code", "refresh_token", "client_credentials"},
	}, sdkClient())
	if err != nil {
		t.Fatalf("RegisterClient: %v", err)
	}
	if reg.ClientSecret == "" || strings.Join(reg.GrantTypes, ",") != "authorization_code,refresh_token" {
		t.Fatalf("registration = %+v, want a secret and narrowed grants", reg)
	}

	verifier := oauth2.GenerateVerifier()
	code, cb := e.codeWith(authParams(reg.ClientID, verifier), "alice")
	if cb.Get("state") != "st-123" || cb.Get("iss") != issuer {
		t.Fatalf("callback %v lacks state or iss", cb)
	}

	// Token exchange with golang.org/x/oauth2 (client_secret_basic).
	cfg := oauth2.Config{ClientID: reg.ClientID, ClientSecret: reg.ClientSecret, RedirectURL: loopCB,
		Endpoint: oauth2.Endpoint{TokenURL: e.url() + oauth.PathToken, AuthStyle: oauth2.AuthStyleInHeader}}
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	claims := verifyAccess(t, e.srvs[1], tok.AccessToken)
	if claims.Audience != resource || claims.Issuer != issuer || claims.Subject != "alice" ||
		claims.ClientID != reg.ClientID || claims.Scope != "mcp:tools" || claims.Email != "alice@example.com" ||
		!claims.EmailVerified || len(claims.Groups) != 1 || claims.ID == "" || claims.Expiry-claims.IssuedAt != 600 {
		t.Fatalf("claims = %+v", claims)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}

	// JWKS from the other replica publishes both keys, public only.
	resp, body := e.do(mustReq(t, http.MethodGet, e.url()+oauth.PathJWKS))
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &jwks); err != nil || resp.StatusCode != 200 || len(jwks.Keys) != 2 {
		t.Fatalf("jwks: %d %s", resp.StatusCode, body)
	}
	for _, k := range jwks.Keys {
		if _, private := k["d"]; private || k["kid"] == "" {
			t.Fatalf("jwks key %v is private or has no kid", k)
		}
	}

	// Refresh rotates.
	resp2, rt := e.token(refreshForm(reg.ClientID, tok.RefreshToken), reg.ClientID, reg.ClientSecret)
	if resp2.StatusCode != 200 || rt["refresh_token"] == tok.RefreshToken || resp2.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("refresh: %d %v", resp2.StatusCode, rt)
	}
	newRT := rt["refresh_token"].(string)
	newAT := rt["access_token"].(string)
	if c := verifyAccess(t, e.srvs[0], newAT); c.Audience != resource || c.Subject != "alice" {
		t.Fatalf("refreshed claims %+v", c)
	}

	// Revoke the access token, then the refresh token.
	resp3, _ := e.postForm(oauth.PathRevoke, url.Values{"token": {newAT}}, reg.ClientID, reg.ClientSecret)
	if resp3.StatusCode != 200 {
		t.Fatalf("revoke access token: %d", resp3.StatusCode)
	}
	for i, s := range e.srvs {
		if revoked, err := s.IsRevoked(ctx, verifyAccess(t, s, newAT).ID, verifyAccess(t, s, newAT).FamilyID); err != nil || !revoked {
			t.Fatalf("replica %d: IsRevoked = %v, %v", i, revoked, err)
		}
	}
	resp4, _ := e.postForm(oauth.PathRevoke, url.Values{"token": {newRT}, "token_type_hint": {"refresh_token"}}, reg.ClientID, reg.ClientSecret)
	if resp4.StatusCode != 200 {
		t.Fatalf("revoke refresh token: %d", resp4.StatusCode)
	}
	resp5, m := e.token(refreshForm(reg.ClientID, newRT), reg.ClientID, reg.ClientSecret)
	wantOAuthError(t, resp5, m, http.StatusBadRequest, "invalid_grant")
	return []string{reg.ClientSecret, code, tok.RefreshToken, newRT, verifier}
}

func mustReq(t *testing.T, method, u string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// assertNoSecretsInRedis scans every key and value: only hashes of secrets
// may be stored.
func assertNoSecretsInRedis(t *testing.T, rs *redisserver.Server, secrets []string) {
	t.Helper()
	opt, err := goredis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opt)
	defer c.Close()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	sawOAuth := false
	for _, k := range keys {
		sawOAuth = sawOAuth || strings.Contains(k, "oauth:")
		var val string
		if typ, _ := c.Type(ctx, k).Result(); typ == "string" {
			val, _ = c.Get(ctx, k).Result()
		}
		for _, s := range secrets {
			if strings.Contains(k, s) || strings.Contains(val, s) {
				t.Fatalf("secret found in redis key %q", k)
			}
		}
	}
	if !sawOAuth {
		t.Fatalf("no oauth: keys in %v", keys)
	}
}

func TestMetadataEndpoints(t *testing.T) {
	e := newMemEnv(t, func(o *oauth.Options) { o.MetadataPaths = []string{"/mcp"} })
	for _, p := range []string{
		"/.well-known/oauth-authorization-server",
		"/.well-known/oauth-authorization-server/mcp",
		"/.well-known/openid-configuration",
		"/.well-known/openid-configuration/mcp",
		"/mcp/.well-known/openid-configuration",
	} {
		t.Run(p, func(t *testing.T) {
			resp, body := e.do(mustReq(t, http.MethodGet, e.url()+p))
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			want := map[string]any{
				"issuer": issuer, "authorization_endpoint": issuer + "/oauth2/authorize",
				"token_endpoint": issuer + "/oauth2/token", "registration_endpoint": issuer + "/oauth2/register",
				"revocation_endpoint": issuer + "/oauth2/revoke", "jwks_uri": issuer + "/oauth2/jwks",
				"client_id_metadata_document_supported": true,
			}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("%s = %v, want %v", k, m[k], v)
				}
			}
			for k, v := range map[string]string{
				"code_challenge_methods_supported":      "S256",
				"response_types_supported":              "code",
				"grant_types_supported":                 "authorization_code,refresh_token",
				"token_endpoint_auth_methods_supported": "none,client_secret_basic,client_secret_post",
				"scopes_supported":                      "mcp:tools,mcp:resources",
			} {
				if got := joinAny(m[k]); got != v {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
		})
	}
}

func joinAny(v any) string {
	l, _ := v.([]any)
	s := make([]string, len(l))
	for i, x := range l {
		s[i], _ = x.(string)
	}
	return strings.Join(s, ",")
}
