package attacks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// cases is the attack table. Add a row for every new attack; the harness
// asserts each field of want and that the MCP server saw nothing unless
// want.upstream says it must.
func cases() []attack {
	var c []attack
	for _, group := range [][]attack{
		stateCases(), codeCases(), authorizeCases(), registrationCases(), jwtCases(),
		cookieCases(), pathCases(), redirectCases(), headerCases(),
		// The holes of issue 7, one group each. Hole 1 moves replica C's
		// clock, so it runs after the groups that exhaust C's limits.
		hole2Cases(), hole3Cases(), hole4Cases(), hole5Cases(), hole6Cases(), hole7Cases(),
		hole8Cases(), hole9Cases(), hole10Cases(), hole11Cases(), hole12Cases(), hole13Cases(),
		hole1Cases(),
		// The tool policy of issue 10 (replica P).
		policyCases(),
	} {
		c = append(c, group...)
	}
	return c
}

// unauthenticated is the answer to a request without usable credentials:
// 401, a Bearer challenge pointing at the metadata, nothing upstream.
var unauthenticated = want{status: http.StatusUnauthorized, apiCode: "unauthenticated", challenge: noErrorChallenge}

// invalidToken is the answer to a bearer token refused for reason.
func invalidToken(reason string) want {
	return want{status: http.StatusUnauthorized, apiCode: "unauthenticated", challenge: "invalid_token", reason: reason}
}

// badState is the answer to a callback whose state is refused.
func badState(body string) want {
	return want{status: http.StatusBadRequest, apiCode: "bad_request", body: body}
}

// oauthError is an OAuth JSON error without a redirect.
func oauthError(status int, code string) want {
	return want{status: status, oauthError: code}
}

// ---------------------------------------------------------------------------
// Login state at /oauth2/callback.

const stateCookie = cookieName + "-state"

func hashState(state string) string {
	sum := sha256.Sum256([]byte(state))
	return hex.EncodeToString(sum[:])
}

func stateCases() []attack {
	const unknown = "login state is unknown, expired or already used"
	return []attack{
		{name: "state: forged, no state cookie", send: func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, "/oauth2/callback?state=forged-state&code=forged-code", nil))
		}, want: badState("this login was not started in this browser")},
		{name: "state: forged with a matching state cookie", send: func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, "/oauth2/callback?state=forged-state&code=forged-code", nil,
				withCookie(&http.Cookie{Name: stateCookie, Value: hashState("forged-state")})))
		}, want: badState(unknown)},
		{name: "state: missing", send: func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, "/oauth2/callback?code=forged-code", nil))
		}, want: badState("login state is missing or malformed")},
		{name: "state: oversized", send: func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, "/oauth2/callback?code=c&state="+strings.Repeat("s", 4096), nil))
		}, want: badState("login state is missing or malformed")},
		{name: "state: reused after a completed login (on the other replica)", send: func(t *testing.T, f *fixture) response {
			cb, client := f.startLogin(t, nil, "/", oidcprovider.DemoUsername, oidcprovider.DemoPassword)
			if r := f.send(t, withJar(client, f.req(http.MethodGet, cb.RequestURI(), nil))); r.Status != http.StatusFound {
				t.Fatalf("first callback: %s", r)
			}
			return f.send(t, f.req(http.MethodGet, cb.RequestURI(), nil, f.onB(),
				withCookie(&http.Cookie{Name: stateCookie, Value: hashState(cb.Query().Get("state"))})))
		}, want: badState(unknown)},
		{name: "state: expired in the store", send: func(t *testing.T, f *fixture) response {
			cb, client := f.startLogin(t, nil, "/", oidcprovider.DemoUsername, oidcprovider.DemoPassword)
			f.expireState(t, cb.Query().Get("state"))
			return f.send(t, withJar(client, f.req(http.MethodGet, cb.RequestURI(), nil)))
		}, want: badState(unknown)},
	}
}

// expireState makes the stored login state expire now, as its TTL would,
// after checking that the TTL is bounded.
func (f *fixture) expireState(t *testing.T, state string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: f.redis.Addr()})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	key := "mcp-oidc-proxy:once:oauth-state:" + hashState(state)
	ttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil || ttl <= 0 || ttl > 10*time.Minute {
		t.Fatalf("login state %s has TTL %v (%v), want at most 10m", key, ttl, err)
	}
	if err := rdb.PExpire(ctx, key, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, waitFor, "the login state to expire", func() bool { return rdb.Exists(ctx, key).Val() == 0 })
}

// ---------------------------------------------------------------------------
// Codes and refresh tokens at the façade's /oauth2/token.

func codeCases() []attack {
	invalidGrant := oauthError(http.StatusBadRequest, "invalid_grant")
	// redeem gets a fresh code for the main client and posts the token
	// request, changed by mutate, to replica B.
	redeem := func(mutate func(f *fixture, form url.Values)) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response {
			v := oauth2.GenerateVerifier()
			form := codeForm(f.client, f.code(t, f.client, v), v)
			mutate(f, form)
			return f.postForm(t, "/oauth2/token", form, f.onB())
		}
	}
	return []attack{
		{name: "code: replayed on another replica", send: func(t *testing.T, f *fixture) response {
			v := oauth2.GenerateVerifier()
			form := codeForm(f.client, f.code(t, f.client, v), v)
			if r := f.postForm(t, "/oauth2/token", form); r.Status != http.StatusOK {
				t.Fatalf("first redemption: %s", r)
			}
			return f.postForm(t, "/oauth2/token", form, f.onB())
		}, want: invalidGrant},
		{name: "code: redeemed by another client", send: redeem(func(f *fixture, form url.Values) { form.Set("client_id", f.other) }), want: invalidGrant},
		{name: "code: wrong PKCE verifier", send: redeem(func(_ *fixture, form url.Values) { form.Set("code_verifier", oauth2.GenerateVerifier()) }), want: invalidGrant},
		{name: "code: no PKCE verifier", send: redeem(func(_ *fixture, form url.Values) { form.Del("code_verifier") }), want: invalidGrant},
		{name: "code: other redirect_uri", send: redeem(func(_ *fixture, form url.Values) { form.Set("redirect_uri", "http://127.0.0.1/other-cb") }), want: invalidGrant},
		{name: "code: resource of another server", send: redeem(func(_ *fixture, form url.Values) { form.Set("resource", "https://evil.example/mcp") }),
			want: oauthError(http.StatusBadRequest, "invalid_target")},
		{name: "code: made up", send: func(t *testing.T, f *fixture) response {
			return f.postForm(t, "/oauth2/token", codeForm(f.client, "made-up-code", oauth2.GenerateVerifier()))
		}, want: invalidGrant},
		{name: "token: unknown client", send: func(t *testing.T, f *fixture) response {
			return f.postForm(t, "/oauth2/token", codeForm("unknown-client", "c", oauth2.GenerateVerifier()))
		}, want: oauthError(http.StatusUnauthorized, "invalid_client")},
		{name: "refresh: token of another client", send: func(t *testing.T, f *fixture) response {
			form := f.refreshForm(f.tokens(t, f.client).RefreshToken)
			form.Set("client_id", f.other)
			return f.postForm(t, "/oauth2/token", form, f.onB())
		}, want: invalidGrant},
		{name: "refresh: rotated token reused", send: func(t *testing.T, f *fixture) response {
			form := f.refreshForm(f.tokens(t, f.client).RefreshToken)
			if r := f.postForm(t, "/oauth2/token", form); r.Status != http.StatusOK {
				t.Fatalf("rotation: %s", r)
			}
			return f.postForm(t, "/oauth2/token", form, f.onB())
		}, want: invalidGrant},
	}
}

// ---------------------------------------------------------------------------
// /oauth2/authorize and the consent step.

func authorizeCases() []attack {
	// authorize sends the demo user's browser (logged in, the client
	// already approved) to /oauth2/authorize with a request changed by
	// mutate.
	authorize := func(mutate func(f *fixture, q url.Values)) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response {
			q := f.authorizeQuery(f.client, oauth2.GenerateVerifier())
			mutate(f, q)
			return f.send(t, f.req(http.MethodGet, "/oauth2/authorize?"+q.Encode(), nil, withCookie(f.cookie)))
		}
	}
	// pkceRefused: the error is shown by the proxy (RFC 9700 4.11.2), not
	// redirected, even to a registered redirect URI: no code, no Location.
	pkceRefused := oauthError(http.StatusBadRequest, "invalid_request")
	cimd := func(clientID string) func(*testing.T, *fixture) response {
		return authorize(func(_ *fixture, q url.Values) { q.Set("client_id", clientID) })
	}
	invalidClient := oauthError(http.StatusBadRequest, "invalid_client")
	return []attack{
		{name: "authorize: PKCE plain", send: authorize(func(_ *fixture, q url.Values) {
			q.Set("code_challenge", oauth2.GenerateVerifier())
			q.Set("code_challenge_method", "plain")
		}), want: pkceRefused},
		{name: "authorize: no PKCE challenge", send: authorize(func(_ *fixture, q url.Values) {
			q.Del("code_challenge")
			q.Del("code_challenge_method")
		}), want: pkceRefused},
		{name: "authorize: redirect_uri not registered", send: authorize(func(_ *fixture, q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }),
			want: oauthError(http.StatusBadRequest, "invalid_request")},
		{name: "authorize: unknown client", send: authorize(func(_ *fixture, q url.Values) { q.Set("client_id", "unknown-client") }), want: invalidClient},
		{name: "CIMD: client_id on 127.0.0.1", send: cimd("https://127.0.0.1/client.json"), want: invalidClient},
		{name: "CIMD: client_id on [::1]", send: cimd("https://[::1]/client.json"), want: invalidClient},
		{name: "CIMD: client_id on the link-local metadata address", send: cimd("https://169.254.169.254/latest/meta-data/client.json"), want: invalidClient},
		{name: "CIMD: client_id on IPv4-mapped loopback", send: cimd("https://[::ffff:127.0.0.1]/client.json"), want: invalidClient},
		{name: "CIMD: client_id on IPv6 link-local", send: cimd("https://[fe80::1]/client.json"), want: invalidClient},
		{name: "CIMD: plain http client_id on loopback", send: cimd("http://127.0.0.1/client.json"), want: invalidClient},
		{name: "consent: wrong CSRF token", send: func(t *testing.T, f *fixture) response {
			id := f.pendingConsent(t)
			return f.postForm(t, "/oauth2/consent", url.Values{"request": {id}, "csrf": {"forged"}, "action": {"approve"}}, withCookie(f.cookie))
		}, want: oauthError(http.StatusForbidden, "access_denied")},
		{name: "consent: another user's request", send: func(t *testing.T, f *fixture) response {
			id := f.pendingConsent(t)
			return f.send(t, f.req(http.MethodGet, "/oauth2/consent?request="+url.QueryEscape(id), nil, withCookie(f.malloryCookie(t))))
		}, want: oauthError(http.StatusForbidden, "access_denied")},
	}
}

// pendingConsent registers a new client, sends the demo user to authorize
// it, opens the consent page as the demo user (which binds the request to
// them) and returns the id of the request that awaits an answer.
func (f *fixture) pendingConsent(t *testing.T) string {
	t.Helper()
	q := f.authorizeQuery(f.registerClient(t), oauth2.GenerateVerifier())
	r := f.send(t, f.req(http.MethodGet, "/oauth2/authorize?"+q.Encode(), nil, withCookie(f.cookie)))
	u, err := url.Parse(r.Header.Get("Location"))
	if r.Status != http.StatusFound || err != nil || u.Path != "/oauth2/consent" || u.Query().Get("request") == "" {
		t.Fatalf("authorize did not lead to the consent step: %s Location %q", r, r.Header.Get("Location"))
	}
	if page := f.send(t, f.req(http.MethodGet, u.RequestURI(), nil, withCookie(f.cookie))); page.Status != http.StatusOK {
		t.Fatalf("consent page: %s", page)
	}
	return u.Query().Get("request")
}

// malloryCookie is a browser session of the attacker.
func (f *fixture) malloryCookie(t *testing.T) *http.Cookie {
	t.Helper()
	if f.mallory == nil {
		f.mallory = f.browserLogin(t, nil, malloryName, malloryPassword)
	}
	return f.mallory
}

// ---------------------------------------------------------------------------
// Dynamic client registration.

func registrationCases() []attack {
	redirect := func(uri string) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response {
			return f.register(t, map[string]any{"redirect_uris": []string{redirectURI, uri}, "token_endpoint_auth_method": "none"})
		}
	}
	refused := oauthError(http.StatusBadRequest, "invalid_redirect_uri")
	return []attack{
		{name: "DCR: javascript: redirect URI", send: redirect("javascript:alert(document.domain)//"), want: refused},
		{name: "DCR: JavaScript: in mixed case", send: redirect("JavaScript:alert(1)"), want: refused},
		{name: "DCR: data: redirect URI", send: redirect("data:text/html,<script>alert(1)</script>"), want: refused},
		{name: "DCR: file: redirect URI", send: redirect("file:///etc/passwd"), want: refused},
		{name: "DCR: plain http to a remote host", send: redirect("http://evil.example/cb"), want: refused},
		{name: "DCR: redirect URI with user info", send: redirect("https://app.example@evil.example/cb"), want: refused},
	}
}

// ---------------------------------------------------------------------------
// Bearer tokens at the MCP endpoint.

func jwtCases() []attack {
	minted := func(mutate func(map[string]any)) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response { return f.mcpPost(t, bearer(f.mint(t, mutate))) }
	}
	return []attack{
		{name: "JWT: alg none", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, bearer(f.unsigned(t, map[string]any{"alg": "none", "typ": "at+jwt", "kid": f.kid})))
		}, want: invalidToken("unsupported signing algorithm")},
		{name: "JWT: HS256 keyed with the public key", send: func(t *testing.T, f *fixture) response {
			der, err := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			return f.mcpPost(t, bearer(f.sign(t, pubPEM, f.kid, jose.HS256, "at+jwt", nil)))
		}, want: invalidToken("unsupported signing algorithm")},
		{name: "JWT: wrong audience", send: minted(func(c map[string]any) { c["aud"] = "https://other.example/mcp" }), want: invalidToken("wrong audience")},
		{name: "JWT: wrong issuer", send: minted(func(c map[string]any) { c["iss"] = "https://evil.example" }), want: invalidToken("wrong issuer")},
		{name: "JWT: expired", send: minted(func(c map[string]any) {
			c["exp"], c["iat"], c["nbf"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix()
		}), want: invalidToken("token expired")},
		{name: "JWT: no expiry", send: minted(func(c map[string]any) { delete(c, "exp") }), want: invalidToken("token has no expiry")},
		{name: "JWT: signed by an unknown key", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, bearer(f.sign(t, newKey(t), "attacker-key", jose.ES256, "at+jwt", nil)))
		}, want: invalidToken("unknown signing key")},
		{name: "JWT: another key under the real kid", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, bearer(f.sign(t, newKey(t), f.kid, jose.ES256, "at+jwt", nil)))
		}, want: invalidToken("bad signature")},
		{name: "JWT: identity assertion used as an access token", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, bearer(f.assertion))
		}, want: invalidToken("wrong token type")},
		{name: "JWT: revoked access token", send: func(t *testing.T, f *fixture) response {
			at := f.tokens(t, f.client).AccessToken
			heard := revokedUpdates(t, f.b)
			if r := f.postForm(t, "/oauth2/revoke", url.Values{"client_id": {f.client}, "token": {at}}); r.Status != http.StatusOK {
				t.Fatalf("revoke: %s", r)
			}
			awaitRevokedUpdate(t, f.b, heard)
			return f.mcpPost(t, bearer(at), f.onB())
		}, want: invalidToken("invalid token")},
		{name: "JWT: refresh token sent as an access token", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, bearer(f.tokens(t, f.client).RefreshToken))
		}, want: invalidToken("malformed token")},
		{name: "JWT: two Authorization headers", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, bearer(f.mint(t, nil)), bearer(f.mint(t, nil)))
		}, want: invalidToken("malformed authorization header")},
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ---------------------------------------------------------------------------
// Session cookies.

func cookieCases() []attack {
	cleared := unauthenticated
	cleared.check = func(t *testing.T, _ *fixture, r response, _ []seen) {
		if c := sessionCookieFrom(r.Header); c == nil || c.MaxAge >= 0 {
			t.Fatalf("the refused cookie was not cleared: Set-Cookie %q", r.Header.Values("Set-Cookie"))
		}
	}
	withSession := func(value func(t *testing.T, f *fixture) string) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, "/headers", nil, withCookie(&http.Cookie{Name: cookieName, Value: value(t, f)})))
		}
	}
	var planted, issued string
	fixation := unauthenticated
	fixation.check = func(t *testing.T, _ *fixture, _ response, _ []seen) {
		if issued == "" || issued == planted {
			t.Fatalf("login kept the planted session cookie (issued %q)", issued)
		}
	}
	return []attack{
		{name: "cookie: tampered MAC", send: withSession(func(_ *testing.T, f *fixture) string {
			v := []byte(f.cookie.Value)
			v[len(v)-2] ^= 'A' ^ 'B'
			return string(v)
		}), want: cleared},
		{name: "cookie: signed with another secret", send: withSession(func(t *testing.T, _ *fixture) string {
			c, err := session.NewCodec([]byte("another-secret-0123456789abcdefghijklmnopqrstuvwxyz"))
			if err != nil {
				t.Fatal(err)
			}
			tk, err := c.NewTicket()
			if err != nil {
				t.Fatal(err)
			}
			return c.Encode(tk)
		}), want: cleared},
		{name: "cookie: oversized", send: withSession(func(*testing.T, *fixture) string { return strings.Repeat("A", 8<<10) }), want: cleared},
		{name: "cookie: session fixation", send: func(t *testing.T, f *fixture) response {
			// The attacker plants their own valid session cookie in the
			// victim's browser before the victim logs in.
			planted = f.malloryCookie(t).Value
			jar := newJar(t)
			u, _ := url.Parse(f.public)
			jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: planted}})
			issued = f.browserLogin(t, jar, oidcprovider.DemoUsername, oidcprovider.DemoPassword).Value
			f.mallory = nil // the login ended that session
			return f.send(t, f.req(http.MethodGet, "/headers", nil, withCookie(&http.Cookie{Name: cookieName, Value: planted})))
		}, want: fixation},
		{name: "cookie: replayed after logout", send: func(t *testing.T, f *fixture) response {
			c := f.browserLogin(t, nil, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
			r := f.send(t, f.req(http.MethodPost, "/oauth2/logout", nil, withCookie(c),
				header("Origin", f.public), header("Sec-Fetch-Site", "same-origin")))
			if r.Status >= 400 {
				t.Fatalf("logout: %s", r)
			}
			return f.send(t, f.req(http.MethodGet, "/headers", nil, withCookie(c), f.onB()))
		}, want: cleared},
	}
}

// ---------------------------------------------------------------------------
// Paths around the public path /public/*.

func pathCases() []attack {
	raw := func(target string) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response { return f.raw(t, target) }
	}
	// cleaned: Go's mux answers a path with dot segments or "//" by
	// redirecting to its clean form, which is then authenticated. Encoded
	// forms are not cleaned: they are not a public path, so they are
	// authenticated as they are.
	cleaned := func(to string) want { return want{status: http.StatusTemporaryRedirect, location: to} }
	return []attack{
		{name: "path: /public/../mcp", send: raw("/public/../mcp"), want: cleaned("/mcp")},
		{name: "path: /public/%2e%2e/mcp", send: raw("/public/%2e%2e/mcp"), want: unauthenticated},
		{name: "path: /public/..;/mcp", send: raw("/public/..;/mcp"), want: unauthenticated},
		{name: "path: /public%2f..%2fmcp", send: raw("/public%2f..%2fmcp"), want: unauthenticated},
		{name: "path: /public/%2e%2e%2fmcp", send: raw("/public/%2e%2e%2fmcp"), want: unauthenticated},
		{name: "path: double slash /public//../mcp", send: raw("/public//../mcp"), want: cleaned("/mcp")},
		{name: "path: backslash /public/..\\mcp", send: raw("/public/..\\mcp"), want: unauthenticated},
		{name: "path: encoded backslash /public/..%5cmcp", send: raw("/public/..%5cmcp"), want: unauthenticated},
		{name: "path: encoded NUL /public/%00/../../mcp", send: raw("/public/%00/../../mcp"), want: cleaned("/mcp")},
		{name: "path: encoded NUL /public/x%00", send: raw("/public/x%00"), want: unauthenticated},
		{name: "path: double-encoded /public/%252e%252e/mcp", send: raw("/public/%252e%252e/mcp"), want: unauthenticated},
		{name: "path: /public/.%2e/mcp", send: raw("/public/.%2e/mcp"), want: unauthenticated},
	}
}

// ---------------------------------------------------------------------------
// Where a login returns to.

func redirectCases() []attack {
	returnTo := func(rd string) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response {
			return f.loginWithReturn(t, nil, rd, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
		}
	}
	// home: the login completes and lands on "/", never on the requested
	// target, and no header was injected.
	home := want{status: http.StatusFound, location: "/", check: func(t *testing.T, _ *fixture, r response, _ []seen) {
		for _, c := range (&http.Response{Header: r.Header}).Cookies() {
			if c.Name == "evil" {
				t.Fatalf("a header was injected: Set-Cookie %q", r.Header.Values("Set-Cookie"))
			}
		}
		if sessionCookieFrom(r.Header) == nil {
			t.Fatal("the login did not complete")
		}
	}}
	return []attack{
		{name: "return URL: CRLF header injection", send: returnTo("/\r\nSet-Cookie: evil=1"), want: home},
		{name: "return URL: encoded CRLF", send: returnTo("/%0d%0aSet-Cookie:%20evil=1"), want: home},
		{name: "return URL: //evil.example", send: returnTo("//evil.example/"), want: home},
		{name: "return URL: /\\evil.example", send: returnTo("/\\evil.example/"), want: home},
		{name: "return URL: https://evil.example", send: returnTo("https://evil.example/"), want: home},
		{name: "return URL: encoded //evil.example", send: returnTo("/%2F%2Fevil.example/"), want: home},
		{name: "return URL: tab-split //evil.example", send: returnTo("/\t/evil.example/"), want: home},
	}
}

// ---------------------------------------------------------------------------
// Identity and forwarding headers.

// spoof sends an authenticated request with the given headers (name,
// value, name, value...).
func spoof(headers ...string) func(*testing.T, *fixture) response {
	return func(t *testing.T, f *fixture) response {
		opts := []option{bearer(f.mint(t, nil))}
		for i := 0; i+1 < len(headers); i += 2 {
			opts = append(opts, header(headers[i], headers[i+1]))
		}
		return f.send(t, f.req(http.MethodGet, "/headers", nil, opts...))
	}
}

// arrivesWithout: the request reached the upstream with the proxy's identity
// headers only and none of the forbidden headers, in any spelling (lower
// case, "_" for "-").
func arrivesWithout(forbidden ...string) want {
	return want{status: http.StatusOK, upstream: true, check: func(t *testing.T, f *fixture, _ response, reached []seen) {
		if len(reached) == 0 {
			return // reported by the harness
		}
		for k, v := range reached[0].Header {
			name := strings.ReplaceAll(strings.ToLower(k), "_", "-")
			if slices.Contains(forbidden, name) {
				t.Errorf("upstream got %s: %q", k, v)
			}
			switch name {
			case "x-forwarded-user":
				if k != "X-Forwarded-User" || !slices.Equal(v, []string{oidcprovider.DemoUserID}) {
					t.Errorf("upstream got %s: %q, want only the proxy's X-Forwarded-User: %s", k, v, oidcprovider.DemoUserID)
				}
			case "x-forwarded-email", "x-forwarded-groups", "x-user-id", "x-user-email", "x-user-groups", "x-user-name", "authorization":
				t.Errorf("upstream got %s: %q", k, v)
			case "x-mcp-identity-assertion":
				if slices.Contains(v, "forged") || len(v) != 1 {
					t.Errorf("upstream got %s: %q, want the proxy's own assertion", k, v)
				}
			}
		}
	}}
}

func headerCases() []attack {
	arrives := arrivesWithout()
	metadata := func(path string) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, path, nil, header("X-Forwarded-Host", "evil.example"), header("X-Forwarded-Proto", "https")))
		}
	}
	doc := func(check func(t *testing.T, f *fixture, m map[string]any)) want {
		return want{status: http.StatusOK, check: func(t *testing.T, f *fixture, r response, _ []seen) {
			var m map[string]any
			if err := json.Unmarshal(r.Body, &m); err != nil {
				t.Fatalf("metadata: %v (%s)", err, r)
			}
			check(t, f, m)
		}}
	}
	return []attack{
		{name: "headers: X-Forwarded-User and friends", send: spoof("X-Forwarded-User", "admin", "X-Forwarded-Email", "admin@example.com", "X-Forwarded-Groups", "admins"), want: arrives},
		{name: "headers: x_forwarded_user (underscore, lower case)", send: spoof("x_forwarded_user", "admin", "x-forwarded-user", "admin"), want: arrives},
		{name: "headers: the original preset's X-User-ID", send: spoof("X-User-ID", "admin", "X-User-Groups", "admins", "X-USER-EMAIL", "admin@example.com"), want: arrives},
		{name: "headers: forged identity assertion", send: spoof("X-MCP-Identity-Assertion", "forged"), want: arrives},
		{name: "headers: spoofed identity without credentials", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, header("X-Forwarded-User", oidcprovider.DemoUserID), header("X-Forwarded-Email", oidcprovider.DemoEmail))
		}, want: unauthenticated},
		{name: "forwarding: X-Forwarded-Host from an untrusted peer in the challenge", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, header("X-Forwarded-Host", "evil.example"), header("X-Forwarded-Proto", "https"))
		}, want: unauthenticated},
		{name: "forwarding: X-Forwarded-Host from an untrusted peer in resource metadata", send: metadata("/.well-known/oauth-protected-resource/mcp"),
			want: doc(func(t *testing.T, f *fixture, m map[string]any) {
				if m["resource"] != f.resource || !slices.Equal(anyStrings(m["authorization_servers"]), []string{f.public}) {
					t.Errorf("resource metadata %v, want resource %s at %s", m, f.resource, f.public)
				}
			})},
		{name: "forwarding: X-Forwarded-Host from an untrusted peer in server metadata", send: metadata("/.well-known/oauth-authorization-server"),
			want: doc(func(t *testing.T, f *fixture, m map[string]any) {
				for _, k := range []string{"issuer", "authorization_endpoint", "token_endpoint", "registration_endpoint", "jwks_uri"} {
					if v, _ := m[k].(string); !strings.HasPrefix(v, f.public) {
						t.Errorf("%s = %q, want it under %s", k, v, f.public)
					}
				}
			})},
	}
}

func anyStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}
