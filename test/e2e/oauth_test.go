package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// ---------------------------------------------------------------------------
// Routing the client's steps to replicas.

// router rewrites requests addressed to the public (external) URL so they
// reach the replica pick chooses, and records which replica served which
// path. The client keeps using the one URL it was given, exactly as behind
// a load balancer: cookies, the PRM resource check and issuer comparisons
// all see the external URL.
type router struct {
	public string // host[:port] of the external URL
	names  map[string]string
	pick   func(r *http.Request) *replica

	mu     sync.Mutex
	served []string // "path@replica"
}

func newRouter(public string, names map[*replica]string, pick func(r *http.Request) *replica) *router {
	u, _ := url.Parse(public)
	rt := &router{public: u.Host, names: map[string]string{}, pick: pick}
	for r, n := range names {
		ru, _ := url.Parse(r.URL)
		rt.names[ru.Host] = n
	}
	return rt
}

func (rt *router) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != rt.public {
		return http.DefaultTransport.RoundTrip(r)
	}
	target, _ := url.Parse(rt.pick(r).URL)
	orig := r
	r = r.Clone(r.Context())
	r.URL.Host = target.Host
	r.Host = rt.public // the Host header stays the public one
	rt.mu.Lock()
	rt.served = append(rt.served, r.URL.Path+"@"+rt.names[target.Host])
	rt.mu.Unlock()
	resp, err := http.DefaultTransport.RoundTrip(r)
	if resp != nil {
		resp.Request = orig // relative redirects resolve against the public URL
	}
	return resp, err
}

// servedBy returns the replicas that served path.
func (rt *router) servedBy(path string) []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var out []string
	for _, s := range rt.served {
		if p, name, _ := strings.Cut(s, "@"); p == path && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// alternate returns a pick function cycling through rs, one per request.
func alternate(rs ...*replica) func(*http.Request) *replica {
	var mu sync.Mutex
	i := 0
	return func(*http.Request) *replica {
		mu.Lock()
		defer mu.Unlock()
		r := rs[i%len(rs)]
		i++
		return r
	}
}

// bearerRecorder remembers the last bearer token the MCP client sent, so a
// test can tell which token the SDK is using.
type bearerRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	last string
}

func (b *bearerRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		b.mu.Lock()
		b.last = v
		b.mu.Unlock()
	}
	return b.base.RoundTrip(r)
}

func (b *bearerRecorder) Last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// ---------------------------------------------------------------------------
// HTTP and OAuth helpers.

// post sends a form or JSON body with client and returns the read response.
func post(tb testing.TB, client *http.Client, target, contentType, body string, header http.Header) response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"v1"}}}`

// mcpPost sends an initialize request with an optional bearer token and
// extra headers, as an MCP client's first request.
func mcpPost(tb testing.TB, client *http.Client, endpoint, token string, header http.Header) response {
	tb.Helper()
	h := http.Header{"Accept": {"application/json, text/event-stream"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		h[k] = v
	}
	return post(tb, client, endpoint, "application/json", initializeBody, h)
}

// challengeParams parses a Bearer WWW-Authenticate value.
func challengeParams(tb testing.TB, v string) map[string]string {
	tb.Helper()
	rest, ok := strings.CutPrefix(v, "Bearer ")
	if !ok {
		tb.Fatalf("WWW-Authenticate %q is not a Bearer challenge", v)
	}
	out := map[string]string{}
	for rest != "" {
		name, after, ok := strings.Cut(rest, `="`)
		if !ok {
			tb.Fatalf("WWW-Authenticate %q: malformed", v)
		}
		val, tail, ok := strings.Cut(after, `"`)
		if !ok {
			tb.Fatalf("WWW-Authenticate %q: unterminated value", v)
		}
		out[strings.TrimSpace(name)] = val
		rest = strings.TrimPrefix(strings.TrimSpace(tail), ",")
		rest = strings.TrimSpace(rest)
	}
	return out
}

// assertChallenge checks a 401/403 bearer challenge: status, the error
// code (empty for none) and the absolute resource_metadata URL.
func assertChallenge(tb testing.TB, r response, status int, errCode, metadataURL string) map[string]string {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status = %s, want %d", r, status)
	}
	p := challengeParams(tb, r.Header.Get("WWW-Authenticate"))
	if p["error"] != errCode {
		tb.Errorf("challenge error = %q, want %q (%v)", p["error"], errCode, p)
	}
	if p["resource_metadata"] != metadataURL {
		tb.Errorf("resource_metadata = %q, want %q", p["resource_metadata"], metadataURL)
	}
	return p
}

func getJSON(tb testing.TB, client *http.Client, target string, header http.Header, into any) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s = %d %s", target, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, into); err != nil {
		tb.Fatalf("GET %s: %v (%s)", target, err, b)
	}
}

// prm is the protected resource metadata fields the tests check.
type prm struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
}

// clientForm authenticates a token or revocation request the way the
// registered client does.
func clientForm(cfg oauth2.Config, form url.Values) (url.Values, http.Header) {
	h := http.Header{}
	switch {
	case cfg.ClientSecret == "" || cfg.Endpoint.AuthStyle == oauth2.AuthStyleInParams:
		form.Set("client_id", cfg.ClientID)
		if cfg.ClientSecret != "" {
			form.Set("client_secret", cfg.ClientSecret)
		}
	default:
		r := &http.Request{Header: h}
		r.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	}
	return form, h
}

// oauthErrorCode returns the error of an RFC 6749 error response.
func oauthErrorCode(tb testing.TB, r response) string {
	tb.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil {
		tb.Fatalf("OAuth error body: %v (%s)", err, r)
	}
	return e.Error
}

func audiences(c map[string]any) []string {
	switch v := c["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, a := range v {
			s, _ := a.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

func callWhoami(ctx context.Context, cs *mcp.ClientSession) (mcp.CallToolResult, error) {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		return mcp.CallToolResult{}, err
	}
	return *res, nil
}

// ---------------------------------------------------------------------------
// Façade mode.

// The whole MCP authorization flow with the official Go SDK client against
// the façade: 401 → protected resource metadata → authorization server
// metadata → dynamic registration → authorize (login at the provider and
// consent, automated) → token → initialize → tools/call → refresh (rotation,
// reuse detection) → revoke → 401. Once on one replica with the memory
// store, once on two replicas sharing Redis where the steps are spread:
// discovery, registration and token requests go to A and B alternately
// starting with A (so the code is redeemed on A and the refresh on B), every
// browser request alternates B, A, B, ... (authorize on B, then the login
// redirect, callback and consent pages land on both), and MCP requests go to
// B. Revocation is sent to A and observed on B.
func TestOAuthFacadeFlow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		redis bool
	}{
		{name: "one replica", redis: false},
		{name: "two replicas sharing redis", redis: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{redis: tc.redis})
			a := e.start(t, proxyOptions{args: []string{"--oauth-scopes", "mcp:tools,offline_access"}})
			b := a
			if tc.redis {
				b = e.start(t, proxyOptions{args: []string{"--oauth-scopes", "mcp:tools,offline_access", "--external-url", a.URL}})
			}
			names := map[*replica]string{a: "A", b: "B"}
			authRoute := newRouter(a.URL, names, alternate(a, b))
			browserRoute := newRouter(a.URL, names, alternate(b, a))
			mcpRoute := newRouter(a.URL, names, func(*http.Request) *replica { return b })
			authClient := &http.Client{Transport: authRoute, Timeout: waitFor}
			recorder := &bearerRecorder{base: mcpRoute}
			mcpClient := &http.Client{Transport: recorder, Timeout: waitFor}
			endpoint := a.URL + "/mcp"
			metadataURL := a.URL + "/.well-known/oauth-protected-resource/mcp"

			// What the SDK is about to discover, asserted step by step.
			unauth := mcpPost(t, mcpClient, endpoint, "", nil)
			p := assertChallenge(t, unauth, http.StatusUnauthorized, "", metadataURL)
			if p["resource_metadata"] == "" {
				t.Fatal("no resource_metadata in the challenge")
			}
			var pr prm
			getJSON(t, authClient, metadataURL, nil, &pr)
			if pr.Resource != endpoint || !slices.Equal(pr.AuthorizationServers, []string{a.URL}) {
				t.Fatalf("protected resource metadata = %+v, want resource %s served by %s", pr, endpoint, a.URL)
			}
			var asm struct {
				Issuer               string   `json:"issuer"`
				RegistrationEndpoint string   `json:"registration_endpoint"`
				CodeChallenge        []string `json:"code_challenge_methods_supported"`
			}
			getJSON(t, authClient, a.URL+"/.well-known/oauth-authorization-server", nil, &asm)
			if asm.Issuer != a.URL || asm.RegistrationEndpoint == "" || !slices.Equal(asm.CodeChallenge, []string{"S256"}) {
				t.Fatalf("authorization server metadata = %+v", asm)
			}

			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			c, err := mcpclient.Connect(ctx, mcpclient.Options{
				Endpoint:         endpoint,
				ClientName:       "e2e " + tc.name,
				Login:            func(ctx context.Context, u string) (*url.URL, error) { return e.idp.Login(ctx, nil, u) },
				AuthHTTPClient:   authClient,
				BrowserTransport: browserRoute,
				MCPHTTPClient:    mcpClient,
			})
			if err != nil {
				t.Fatalf("SDK client through the OAuth flow: %v", err)
			}
			t.Cleanup(func() { _ = c.Close() })
			if c.Browser.Authorizations() != 1 || c.Browser.Consents() != 1 {
				t.Fatalf("authorizations %d, consents %d; want one of each", c.Browser.Authorizations(), c.Browser.Consents())
			}
			cfg, err := c.Tokens.Config()
			if err != nil || cfg.ClientID == "" {
				t.Fatalf("registered client: %+v, %v", cfg, err)
			}
			tok1, err := c.Tokens.Token()
			if err != nil {
				t.Fatal(err)
			}
			if tok1.RefreshToken == "" {
				t.Fatal("the façade issued no refresh token")
			}
			claims := oidcprovider.TokenClaims(t, tok1.AccessToken)
			if !slices.Contains(audiences(claims), endpoint) || claims["iss"] != a.URL || claims["sub"] != oidcprovider.DemoUserID {
				t.Fatalf("access token claims = %v, want aud %s, iss %s, sub %s", claims, endpoint, a.URL, oidcprovider.DemoUserID)
			}

			// initialize happened in Connect; tools/call with the bearer token.
			assertDemoIdentity(t, whoami(t, c.Session))
			if recorder.Last() != tok1.AccessToken {
				t.Fatal("the MCP request did not carry the issued access token")
			}

			// Refresh: the rotated pair works, the SDK uses it without
			// another authorization.
			tok2, err := c.Tokens.Refresh(ctx)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if tok2.AccessToken == tok1.AccessToken || tok2.RefreshToken == "" || tok2.RefreshToken == tok1.RefreshToken {
				t.Fatal("refresh did not rotate the access and refresh tokens")
			}
			assertDemoIdentity(t, whoami(t, c.Session))
			if recorder.Last() != tok2.AccessToken || c.Browser.Authorizations() != 1 {
				t.Fatalf("after refresh: the MCP request did not carry the refreshed token (authorizations %d)", c.Browser.Authorizations())
			}

			// Reusing the spent refresh token is refused and revokes the
			// family: the rotated refresh token and its access token die.
			tokenURL := a.URL + "/oauth2/token"
			refresh := func(rt string) response {
				form, h := clientForm(cfg, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
				return post(t, authClient, tokenURL, "application/x-www-form-urlencoded", form.Encode(), h)
			}
			if r := refresh(tok1.RefreshToken); r.Status != http.StatusBadRequest || oauthErrorCode(t, r) != "invalid_grant" {
				t.Fatalf("reusing the spent refresh token = %s, want 400 invalid_grant", r)
			}
			if r := refresh(tok2.RefreshToken); r.Status != http.StatusBadRequest || oauthErrorCode(t, r) != "invalid_grant" {
				t.Fatalf("rotated refresh token after reuse = %s, want 400 invalid_grant (family revoked)", r)
			}
			assertChallenge(t, mcpPost(t, mcpClient, endpoint, tok2.AccessToken, nil), http.StatusUnauthorized, "invalid_token", metadataURL)

			// The SDK meets the 401 on its next call and authorizes again
			// (a new registration, so consent is asked again).
			assertDemoIdentity(t, whoami(t, c.Session))
			if c.Browser.Authorizations() != 2 {
				t.Fatalf("authorizations = %d after the family was revoked, want 2", c.Browser.Authorizations())
			}
			tok3, err := c.Tokens.Token()
			if err != nil {
				t.Fatal(err)
			}
			cfg3, err := c.Tokens.Config()
			if err != nil {
				t.Fatal(err)
			}

			// Revocation (RFC 7009) of the access token, then of the refresh
			// token: both end on the MCP endpoint as 401 invalid_token.
			revoke := func(token string) {
				t.Helper()
				form, h := clientForm(cfg3, url.Values{"token": {token}})
				r := post(t, authClient, a.URL+"/oauth2/revoke", "application/x-www-form-urlencoded", form.Encode(), h)
				if r.Status != http.StatusOK {
					t.Fatalf("revoke = %s, want 200", r)
				}
			}
			if r := mcpPost(t, mcpClient, endpoint, tok3.AccessToken, nil); r.Status != http.StatusOK {
				t.Fatalf("initialize with the new token = %s, want 200", r)
			}
			revoke(tok3.AccessToken)
			assertChallenge(t, mcpPost(t, mcpClient, endpoint, tok3.AccessToken, nil), http.StatusUnauthorized, "invalid_token", metadataURL)

			form, h := clientForm(cfg3, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok3.RefreshToken}})
			r := post(t, authClient, tokenURL, "application/x-www-form-urlencoded", form.Encode(), h)
			if r.Status != http.StatusOK {
				t.Fatalf("refresh before revoking the refresh token = %s", r)
			}
			var tok4 oauth2.Token
			if err := json.Unmarshal(r.Body, &tok4); err != nil || tok4.RefreshToken == "" {
				t.Fatalf("refresh response %s: %v", r.Body, err)
			}
			revoke(tok4.RefreshToken)
			assertChallenge(t, mcpPost(t, mcpClient, endpoint, tok4.AccessToken, nil), http.StatusUnauthorized, "invalid_token", metadataURL)
			form, h = clientForm(cfg3, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok4.RefreshToken}})
			if r := post(t, authClient, tokenURL, "application/x-www-form-urlencoded", form.Encode(), h); r.Status != http.StatusBadRequest || oauthErrorCode(t, r) != "invalid_grant" {
				t.Fatalf("revoked refresh token = %s, want 400 invalid_grant", r)
			}

			if tc.redis {
				for path, want := range map[string][]string{
					"/oauth2/token":    {"A", "B"},
					"/oauth2/register": {"A", "B"},
					"/oauth2/consent":  {"A", "B"},
					"/oauth2/callback": {"A", "B"},
					"/mcp":             {"B"},
				} {
					route := authRoute
					switch path {
					case "/oauth2/consent", "/oauth2/callback":
						route = browserRoute
					case "/mcp":
						route = mcpRoute
					}
					if got := route.servedBy(path); !slices.Equal(got, want) {
						t.Errorf("%s served by %v, want %v", path, got, want)
					}
				}
				if got := browserRoute.servedBy("/oauth2/authorize"); !slices.Contains(got, "B") {
					t.Errorf("/oauth2/authorize served by %v, want B", got)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// External mode and rejections.

// externalResource is the resource of the external-mode replicas: a fixed
// external URL, because the provider must know the audience before the
// proxy's port exists. It also shows that challenges use the configured
// external URL and never the internal listener.
const (
	externalBase     = "https://mcp.example.test"
	externalResource = externalBase + "/mcp"
	otherUserID      = "other-user"
	otherUsername    = "other@example.com"
	otherPassword    = "other-password"
	cliClientID      = "e2e-mcp-cli"
	cliClientSecret  = "e2e-mcp-cli-secret"
	cliRedirect      = "http://127.0.0.1/cli-callback"
)

// providerToken runs a normal authorization code flow with PKCE for the
// pre-registered CLI client at the provider and returns its access token.
func providerToken(tb testing.TB, idp *oidcprovider.Provider, username, password string) string {
	tb.Helper()
	var disc struct {
		Authorization string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
	}
	getJSON(tb, http.DefaultClient, idp.DiscoveryURL(), nil, &disc)
	cfg := oauth2.Config{
		ClientID: cliClientID, ClientSecret: cliClientSecret, RedirectURL: cliRedirect,
		Scopes:   []string{"openid", "profile", "email"},
		Endpoint: oauth2.Endpoint{AuthURL: disc.Authorization, TokenURL: disc.Token, AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cb, err := idp.LoginAs(ctx, nil, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), username, password)
	if err != nil {
		tb.Fatalf("provider login as %s: %v", username, err)
	}
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		tb.Fatalf("provider token exchange: %v", err)
	}
	return tok.AccessToken
}

func externalIDP(audience []string) oidcprovider.Options {
	return oidcprovider.Options{
		AccessTokenAudience: audience,
		Users: []oidcprovider.User{
			{ID: oidcprovider.DemoUserID, Username: oidcprovider.DemoUsername, Password: oidcprovider.DemoPassword,
				Email: oidcprovider.DemoEmail, EmailVerified: true, GivenName: "Demo", FamilyName: "User", Groups: oidcprovider.DemoGroups()},
			{ID: otherUserID, Username: otherUsername, Password: otherPassword, Email: otherUsername, EmailVerified: true,
				GivenName: "Other", FamilyName: "User", Groups: []string{"mcp-users"}},
		},
		Clients: []oidcprovider.Client{
			{ID: oidcprovider.DefaultClientID, Secret: oidcprovider.DefaultClientSecret,
				RedirectURIs: []string{"http://**/oauth2/callback", "https://**/oauth2/callback"}},
			{ID: cliClientID, Secret: cliClientSecret, RedirectURIs: []string{cliRedirect}},
		},
	}
}

// staticSession connects the SDK client to base+"/mcp" with a fixed bearer
// token (the Host header stays the replica's; the resource is the external
// URL's).
func staticSession(tb testing.TB, base, token string, header http.Header) (*mcp.ClientSession, error) {
	tb.Helper()
	var rt http.RoundTripper = http.DefaultTransport
	if header != nil {
		rt = headerTransport{base: rt, header: header}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	transport := &mcp.StreamableClientTransport{
		Endpoint: base + "/mcp", HTTPClient: &http.Client{Transport: rt, Timeout: waitFor},
		OAuthHandler: mcpclient.StaticToken(token),
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-static", Version: "v1"}, nil).Connect(ctx, transport, nil)
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { _ = cs.Close() })
	return cs, nil
}

// External mode: the provider issues audience-bound JWT access tokens and
// the proxy only validates them. Also every bearer rejection that needs the
// real wiring: wrong audience, missing scope, foreign Origin, a session id
// reused by another user, an opaque token without introspection.
func TestOAuthExternalMode(t *testing.T) {
	e := newEnv(t, envOptions{idp: externalIDP([]string{externalResource})})
	ext := []string{"--oauth-mode", "external", "--external-url", externalBase, "--allowed-origins", "https://app.example"}
	p := e.start(t, proxyOptions{args: ext})
	metadataURL := externalBase + "/.well-known/oauth-protected-resource/mcp"

	// Discovery points at the provider; the challenge uses the external URL.
	var pr prm
	getJSON(t, http.DefaultClient, p.URL+"/.well-known/oauth-protected-resource/mcp", nil, &pr)
	if pr.Resource != externalResource || !slices.Equal(pr.AuthorizationServers, []string{e.idp.Issuer()}) {
		t.Fatalf("protected resource metadata = %+v, want resource %s and the provider %s", pr, externalResource, e.idp.Issuer())
	}
	unauth := mcpPost(t, http.DefaultClient, p.URL+"/mcp", "", nil)
	assertChallenge(t, unauth, http.StatusUnauthorized, "", metadataURL)
	_, port, _ := strings.Cut(strings.TrimPrefix(p.URL, "http://"), ":")
	if strings.Contains(unauth.Header.Get("WWW-Authenticate"), port) {
		t.Errorf("challenge %q leaks the internal port %s", unauth.Header.Get("WWW-Authenticate"), port)
	}

	demo := providerToken(t, e.idp, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
	if aud := audiences(oidcprovider.TokenClaims(t, demo)); !slices.Contains(aud, externalResource) {
		t.Fatalf("provider access token aud = %v, want %s", aud, externalResource)
	}

	t.Run("valid token", func(t *testing.T) {
		cs, err := staticSession(t, p.URL, demo, nil)
		if err != nil {
			t.Fatalf("SDK client with the provider's token: %v", err)
		}
		assertDemoIdentity(t, whoami(t, cs))
	})

	t.Run("token for another resource", func(t *testing.T) {
		other := e.start(t, proxyOptions{args: append(slices.Clone(ext), "--external-url", "https://other.example.test")})
		r := mcpPost(t, http.DefaultClient, other.URL+"/mcp", demo, nil)
		assertChallenge(t, r, http.StatusUnauthorized, "invalid_token", "https://other.example.test/.well-known/oauth-protected-resource/mcp")
		if _, err := staticSession(t, other.URL, demo, nil); !errors.Is(err, mcpclient.ErrRefused) {
			t.Fatalf("SDK client with a token for another resource: %v, want ErrRefused", err)
		}
	})

	t.Run("opaque token from a provider without an API audience", func(t *testing.T) {
		plain := newEnv(t, envOptions{idp: externalIDP(nil)})
		q := plain.start(t, proxyOptions{args: ext})
		tok := providerToken(t, plain.idp, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
		assertChallenge(t, mcpPost(t, http.DefaultClient, q.URL+"/mcp", tok, nil), http.StatusUnauthorized, "invalid_token", metadataURL)
	})

	t.Run("required scope not granted", func(t *testing.T) {
		s := e.start(t, proxyOptions{args: append(slices.Clone(ext), "--oauth-required-scopes", "mcp:admin")})
		r := mcpPost(t, http.DefaultClient, s.URL+"/mcp", demo, nil)
		ch := assertChallenge(t, r, http.StatusForbidden, "insufficient_scope", metadataURL)
		if ch["scope"] != "mcp:admin" {
			t.Errorf("challenge scope = %q, want mcp:admin", ch["scope"])
		}
		// The check is what refuses: without the requirement the same
		// token passes on the same wiring.
		if r := mcpPost(t, http.DefaultClient, p.URL+"/mcp", demo, nil); r.Status != http.StatusOK {
			t.Fatalf("same token without required scopes = %s, want 200", r)
		}
	})

	t.Run("origin", func(t *testing.T) {
		r := mcpPost(t, http.DefaultClient, p.URL+"/mcp", demo, http.Header{"Origin": {"https://evil.example"}})
		if r.Status != http.StatusForbidden {
			t.Fatalf("foreign Origin = %s, want 403", r)
		}
		cs, err := staticSession(t, p.URL, demo, http.Header{"Origin": {"https://app.example"}})
		if err != nil {
			t.Fatalf("allowed Origin: %v", err)
		}
		assertDemoIdentity(t, whoami(t, cs))
	})

	t.Run("session id reused by another user", func(t *testing.T) {
		cs, err := staticSession(t, p.URL, demo, nil)
		if err != nil {
			t.Fatal(err)
		}
		sid := cs.ID()
		if sid == "" {
			t.Fatal("the MCP server gave no session id")
		}
		other := providerToken(t, e.idp, otherUsername, otherPassword)
		call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami"}}`
		h := http.Header{
			"Accept": {"application/json, text/event-stream"}, "Authorization": {"Bearer " + other},
			"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {"2025-06-18"},
		}
		// The id the client holds is sealed to its user: to anybody else
		// it is an unknown session.
		if r := post(t, http.DefaultClient, p.URL+"/mcp", "application/json", call, h); r.Status != http.StatusNotFound {
			t.Fatalf("other user with the demo user's session id = %s, want 404", r)
		}
		// The other user's own session works, and the owner's still does.
		ocs, err := staticSession(t, p.URL, other, nil)
		if err != nil {
			t.Fatal(err)
		}
		if who := whoami(t, ocs); who.Headers["X-Forwarded-User"] != otherUserID {
			t.Errorf("other user's whoami = %v", who.Headers)
		}
		assertDemoIdentity(t, whoami(t, cs))
	})
}

// The absolute URLs in challenges and metadata: from X-Forwarded-Proto and
// X-Forwarded-Host only when the peer is a trusted proxy and no external URL
// is configured; otherwise from the request itself.
func TestOAuthResourceURLFromTrustedProxies(t *testing.T) {
	e := newEnv(t, envOptions{})
	noExternal := []string{"--external-url", "", "--oidc-redirect-url", "http://127.0.0.1:1/oauth2/callback"}
	// The host the client used in front of the trusted proxy must be one
	// the operator expects.
	trusted := e.start(t, proxyOptions{args: append(slices.Clone(noExternal), "--trusted-proxies", "127.0.0.1/32", "--allowed-hosts", "mcp.example.com")})
	untrusted := e.start(t, proxyOptions{args: noExternal})
	fwd := http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"mcp.example.com"}}

	for _, tc := range []struct {
		name string
		rep  *replica
		base string
	}{
		{name: "trusted proxy", rep: trusted, base: "https://mcp.example.com"},
		{name: "untrusted peer", rep: untrusted, base: untrusted.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mcpPost(t, http.DefaultClient, tc.rep.URL+"/mcp", "", fwd)
			assertChallenge(t, r, http.StatusUnauthorized, "", tc.base+"/.well-known/oauth-protected-resource/mcp")
			var pr prm
			getJSON(t, http.DefaultClient, tc.rep.URL+"/.well-known/oauth-protected-resource", fwd, &pr)
			if pr.Resource != tc.base+"/mcp" || !slices.Equal(pr.AuthorizationServers, []string{tc.base}) {
				t.Errorf("protected resource metadata = %+v, want resource %s/mcp", pr, tc.base)
			}
		})
	}
}
