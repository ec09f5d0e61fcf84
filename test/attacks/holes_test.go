package attacks

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-injector/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// The holes issue 7 lists, one group of rows each, every row the exact
// rejection the fix implemented.

// invalidGrant is the token endpoint's refusal of a grant.
var invalidGrant = oauthError(http.StatusBadRequest, "invalid_grant")

// evil is the attacker's site.
const evil = "evil.example.com"

// accessRevoked asserts that the access token at is refused at the MCP
// endpoint of replicas A and B as revoked, and reaches nothing. A
// revocation made on another replica reaches a replica's local revoked set
// through Redis pub/sub, normally within milliseconds and within
// oauth.DefaultRevokedReload at worst (pkg/oauth/revoked.go), so an answer
// that still lets the token through is retried until then.
func (f *fixture) accessRevoked(t *testing.T, at string) {
	t.Helper()
	for _, replica := range []option{on(f.a), f.onB()} {
		var r response
		var reached []seen
		start := time.Now()
		waitfor.Poll(oauth.DefaultRevokedReload, waitfor.Interval, func() bool {
			before := f.up.count()
			r = f.mcpPost(t, bearer(at), replica)
			reached = f.up.since(before)
			return r.Status != http.StatusOK
		})
		t.Logf("measured: the revoked token was refused %s after the first try", time.Since(start).Round(time.Millisecond))
		f.assert(t, invalidToken("invalid token"), r, reached)
	}
}

// refresh posts a refresh of rt for the main client.
func (f *fixture) refresh(t *testing.T, rt string, opts ...option) response {
	t.Helper()
	return f.postForm(t, "/oauth2/token", f.refreshForm(rt), opts...)
}

// ---------------------------------------------------------------------------
// Hole 1: façade refresh families end with the user at the provider and at
// their absolute lifetime. Refreshes go to replica C, whose clock the rows
// move past oauth.upstream_recheck_interval (1h) or
// oauth.refresh_token_max_lifetime (720h); tokens come from replica A.

func hole1Cases() []attack {
	// access is the family's access token, issued before the refusal.
	var access string
	familyEnded := invalidGrant
	familyEnded.check = func(t *testing.T, f *fixture, _ response, _ []seen) { f.accessRevoked(t, access) }
	// standingChanged logs user in, changes their standing at the provider
	// and refreshes on C past the recheck interval.
	standingChanged := func(user, password string, change func(*fixture)) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response {
			tok := f.tokensAs(t, f.client, user, password)
			access = tok.AccessToken
			change(f)
			f.shift(t, time.Hour+time.Minute)
			return f.refresh(t, tok.RefreshToken, f.onC())
		}
	}
	var rt string
	unavailable := oauthError(http.StatusServiceUnavailable, "temporarily_unavailable")
	unavailable.check = func(t *testing.T, f *fixture, _ response, _ []seen) {
		f.idpDown.SetDown(false)
		decodeTokens(t, f.refresh(t, rt, f.onC())) // the same token, retried
	}
	return []attack{
		{name: "hole 1: refresh after the user is disabled at the provider", send: standingChanged(leaverName, leaverPassword, func(f *fixture) {
			f.idp.DisableUser(leaverID)
		}), want: familyEnded},
		{name: "hole 1: refresh after the user left the allowed group", send: standingChanged(moverName, moverPassword, func(f *fixture) {
			f.idp.SetGroups(moverID, []string{"contractors"})
		}), want: familyEnded},
		{name: "hole 1: refresh past the family's absolute lifetime", send: func(t *testing.T, f *fixture) response {
			tok := f.tokens(t, f.client)
			f.shift(t, 20*24*time.Hour)
			mid := decodeTokens(t, f.refresh(t, tok.RefreshToken, f.onC())) // refreshing does not extend the family
			f.shift(t, 30*24*time.Hour+time.Minute)
			return f.refresh(t, mid.RefreshToken, f.onC())
		}, want: invalidGrant},
		{name: "hole 1: refresh while the provider is unreachable", send: func(t *testing.T, f *fixture) response {
			rt = f.tokens(t, f.client).RefreshToken
			f.shift(t, time.Hour+time.Minute)
			f.cutOffProvider(t)
			return f.refresh(t, rt, f.onC())
		}, want: unavailable},
	}
}

// ---------------------------------------------------------------------------
// Hole 2: only WebSocket upgrades are tunnelled.

func hole2Cases() []attack {
	plain := want{status: http.StatusOK, upstream: true, check: func(t *testing.T, _ *fixture, _ response, reached []seen) {
		if len(reached) != 1 || reached[0].Path != "/mcp" {
			t.Fatalf("upstream saw %d requests, want the one MCP request", len(reached))
		}
		h := reached[0].Header
		if h.Get("Upgrade") != "" || h.Get("Http2-Settings") != "" || strings.Contains(strings.ToLower(h.Get("Connection")), "upgrade") {
			t.Errorf("upstream got the upgrade offer: Upgrade %q, HTTP2-Settings %q, Connection %q", h.Get("Upgrade"), h.Get("Http2-Settings"), h.Get("Connection"))
		}
	}}
	return []attack{
		{name: "hole 2: h2c upgrade on an authenticated MCP request", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, bearer(f.mint(t, nil)), header("Upgrade", "h2c"),
				header("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"), header("Connection", "Upgrade, HTTP2-Settings"))
		}, want: plain},
	}
}

// ---------------------------------------------------------------------------
// Hole 3: unexpected Host values get 421 before anything else runs (so they
// cannot poison bearer validation); a foreign Origin gets 403.

func hole3Cases() []attack {
	misdirected := want{status: http.StatusMisdirectedRequest, apiCode: "host_not_allowed"}
	foreign := want{status: http.StatusForbidden, apiCode: "forbidden", body: "origin not allowed"}
	rebinding := []option{withHost(evil), header("Origin", "http://"+evil)}
	return []attack{
		{name: "hole 3: 40 invented Host headers, then a genuine token on the real host", send: func(t *testing.T, f *fixture) response {
			at := f.tokens(t, f.client).AccessToken
			for i := range 40 {
				before := f.up.count()
				r := f.mcpPost(t, bearer(at), withHost(fmt.Sprintf("made-up-%d.example", i)))
				f.assert(t, misdirected, r, f.up.since(before))
			}
			return f.mcpPost(t, bearer(at))
		}, want: want{status: http.StatusOK, upstream: true}},
		{name: "hole 3: DNS rebinding with a valid token", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, append(rebinding, bearer(f.mint(t, nil)))...)
		}, want: misdirected},
		{name: "hole 3: DNS rebinding with a valid session cookie", send: func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, "/headers", nil, append(rebinding, withCookie(f.cookie))...))
		}, want: misdirected},
		{name: "hole 3: foreign Origin on the session endpoint", send: func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, "/api/v1/session", nil, withCookie(f.cookie), header("Origin", "http://"+evil)))
		}, want: foreign},
		{name: "hole 3: foreign Origin on the MCP endpoint with a session cookie", send: func(t *testing.T, f *fixture) response {
			return f.mcpPost(t, withCookie(f.cookie), header("Origin", "http://"+evil))
		}, want: foreign},
	}
}

// ---------------------------------------------------------------------------
// Hole 4: a registered redirect URI on the attacker's site is never
// redirected to before the user logged in and approved the client.

func hole4Cases() []attack {
	const landing = "https://evil.example/landing"
	authorize := func(mutate func(url.Values), opts ...option) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response {
			q := f.authorizeQuery(f.registerRedirects(t, landing), oauth2.GenerateVerifier())
			q.Set("redirect_uri", landing)
			mutate(q)
			return f.send(t, f.req(http.MethodGet, "/oauth2/authorize?"+q.Encode(), nil, opts...))
		}
	}
	browser := []option{header("Accept", "text/html"), header("Sec-Fetch-Mode", "navigate")}
	page := func(code string) want {
		return want{status: http.StatusBadRequest, body: "Error: <code>" + code + "</code>", check: func(t *testing.T, _ *fixture, r response, _ []seen) {
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type = %q, want the proxy's HTML error page", ct)
			}
		}}
	}
	noPKCE := func(q url.Values) {
		q.Del("code_challenge")
		q.Del("code_challenge_method")
	}
	return []attack{
		{name: "hole 4: redirect URI on another site, bad response_type", send: authorize(func(q url.Values) { q.Set("response_type", "token") }, browser...),
			want: page("unsupported_response_type")},
		{name: "hole 4: redirect URI on another site, no PKCE", send: authorize(noPKCE, browser...), want: page("invalid_request")},
		{name: "hole 4: redirect URI on another site, no PKCE, API client", send: authorize(noPKCE), want: oauthError(http.StatusBadRequest, "invalid_request")},
	}
}

// ---------------------------------------------------------------------------
// Hole 5: what an unauthenticated caller makes the proxy store is bounded
// in size and rate.

// retryAfter asserts a Retry-After of at least a second.
func retryAfter(w want) want {
	w.check = func(t *testing.T, _ *fixture, r response, _ []seen) {
		if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("Retry-After = %q, want whole seconds >= 1", r.Header.Get("Retry-After"))
		}
	}
	return w
}

// spoofedFor is an X-Forwarded-For value of its own for each request: from
// an untrusted peer, none may earn a fresh budget.
func spoofedFor(i int) option { return header("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1)) }

func hole5Cases() []attack {
	limited := want{status: http.StatusTooManyRequests, apiCode: "rate_limited"}
	return []attack{
		{name: "hole 5: state over 1024 characters at /oauth2/authorize", send: func(t *testing.T, f *fixture) response {
			q := f.authorizeQuery(f.client, oauth2.GenerateVerifier())
			q.Set("state", strings.Repeat("s", 1025))
			return f.send(t, f.req(http.MethodGet, "/oauth2/authorize?"+q.Encode(), nil, withCookie(f.cookie)))
		}, want: want{status: http.StatusBadRequest, oauthError: "invalid_request", body: "parameter state is longer than 1024 characters"}},
		{name: "hole 5: return URL over 2048 characters at /oauth2/start", send: func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, "/oauth2/start?rd=/"+strings.Repeat("r", 2048), nil))
		}, want: want{status: http.StatusBadRequest, apiCode: "bad_request", body: "rd is longer than 2048 characters", check: func(t *testing.T, _ *fixture, r response, _ []seen) {
			if c := r.Header.Values("Set-Cookie"); len(c) > 0 {
				t.Errorf("a refused login set cookies: %q", c)
			}
		}}},
		{name: "hole 5: login rate limit with spoofed X-Forwarded-For, then authorize", send: func(t *testing.T, f *fixture) response {
			start := func(i int) response {
				return f.send(t, f.req(http.MethodGet, "/oauth2/start?rd=/", nil, f.onC(), spoofedFor(i)))
			}
			for i := range loginBurstC {
				if r := start(i); r.Status != http.StatusFound {
					t.Fatalf("login %d of the burst: %s", i+1, r)
				}
			}
			f.assert(t, retryAfter(limited), start(loginBurstC), nil)
			// Authorization requests spend the same budget.
			q := f.authorizeQuery(f.client, oauth2.GenerateVerifier())
			return f.send(t, f.req(http.MethodGet, "/oauth2/authorize?"+q.Encode(), nil, f.onC(), spoofedFor(loginBurstC+1)))
		}, want: retryAfter(oauthError(http.StatusTooManyRequests, "slow_down"))},
	}
}

// ---------------------------------------------------------------------------
// Hole 6: forwarding headers from an untrusted peer and the identity
// assertion in other spellings never reach the upstream.

func hole6Cases() []attack {
	return []attack{
		{name: "hole 6: forwarding headers from an untrusted peer", send: spoof(
			"X-Real-IP", "10.0.0.1", "X-Forwarded-Port", "8443", "X-Forwarded-Prefix", "/evil",
			"Forwarded", "for=10.0.0.1;host="+evil+";proto=https", "X-Original-URL", "/admin",
		), want: arrivesWithout("x-real-ip", "x-forwarded-port", "x-forwarded-prefix", "forwarded", "x-original-url")},
		{name: "hole 6: identity assertion in other spellings", send: spoof(
			"X-MCP_Identity-Assertion", "forged", "x_mcp_identity_assertion", "forged",
		), want: arrivesWithout()},
	}
}

// ---------------------------------------------------------------------------
// Hole 7: the proxy's own endpoints read bodies within
// request_body_timeout (replica C: bodyTimeoutC).

func hole7Cases() []attack {
	var took time.Duration
	const slack = 3 * time.Second // scheduling under -race on a busy machine
	return []attack{
		{name: "hole 7: body trickled to /oauth2/token", send: func(t *testing.T, f *fixture) response {
			var r response
			r, took = f.trickle(t, f.c, "/oauth2/token")
			return r
		}, want: want{status: http.StatusRequestTimeout, apiCode: "request_timeout", check: func(t *testing.T, _ *fixture, _ response, _ []seen) {
			if took < bodyTimeoutC || took > bodyTimeoutC+slack {
				t.Errorf("408 after %v, want within %v of the %v body timeout", took, slack, bodyTimeoutC)
			}
		}}},
	}
}

// ---------------------------------------------------------------------------
// Hole 8: another site cannot log the user out.

func hole8Cases() []attack {
	var victim *http.Cookie
	// alive: the victim's session still works afterwards.
	alive := func(w want) want {
		w.check = func(t *testing.T, f *fixture, r response, _ []seen) {
			if c := sessionCookieFrom(r.Header); c != nil {
				t.Errorf("the refused logout touched the session cookie: %q", r.Header.Values("Set-Cookie"))
			}
			if s := f.send(t, f.req(http.MethodGet, "/api/v1/session", nil, withCookie(victim), f.onB())); s.Status != http.StatusOK {
				t.Errorf("the session after the refused logout: %s", s)
			}
		}
		return w
	}
	logout := func(method string, opts ...option) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response {
			victim = f.browserLogin(t, nil, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
			return f.send(t, f.req(method, "/oauth2/logout", nil, append(opts, withCookie(victim))...))
		}
	}
	return []attack{
		{name: "hole 8: cross-site GET /oauth2/logout", send: logout(http.MethodGet, header("Sec-Fetch-Site", "cross-site"), header("Sec-Fetch-Mode", "navigate")),
			want: alive(want{status: http.StatusOK, body: "<h1>Log out?</h1>"})},
		{name: "hole 8: logout POST from a foreign Origin", send: logout(http.MethodPost, header("Origin", "https://"+evil), header("Sec-Fetch-Site", "cross-site")),
			want: alive(want{status: http.StatusForbidden, apiCode: "forbidden"})},
	}
}

// ---------------------------------------------------------------------------
// Hole 9: authorization server metadata, whose URLs follow the request's
// host, tells caches so.

func hole9Cases() []attack {
	varies := want{status: http.StatusOK, check: func(t *testing.T, _ *fixture, r response, _ []seen) {
		vary := map[string]bool{}
		for _, v := range r.Header.Values("Vary") {
			for tok := range strings.SplitSeq(v, ",") {
				vary[strings.ToLower(strings.TrimSpace(tok))] = true
			}
		}
		if !vary["host"] || !vary["x-forwarded-host"] {
			t.Errorf("Vary = %q, want Host and X-Forwarded-Host (Cache-Control %q)", r.Header.Values("Vary"), r.Header.Get("Cache-Control"))
		}
	}}
	var c []attack
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		c = append(c, attack{name: "hole 9: Vary on " + path, send: func(t *testing.T, f *fixture) response {
			return f.send(t, f.req(http.MethodGet, path, nil))
		}, want: varies})
	}
	return c
}

// ---------------------------------------------------------------------------
// Hole 10: a wrong PKCE verifier does not spend the code.

func hole10Cases() []attack {
	var right url.Values
	kept := invalidGrant
	kept.check = func(t *testing.T, f *fixture, _ response, _ []seen) {
		decodeTokens(t, f.postForm(t, "/oauth2/token", right))
	}
	return []attack{
		{name: "hole 10: wrong PKCE verifier, then the right one", send: func(t *testing.T, f *fixture) response {
			v := oauth2.GenerateVerifier()
			right = codeForm(f.client, f.code(t, f.client, v), v)
			wrong := codeForm(f.client, right.Get("code"), oauth2.GenerateVerifier())
			return f.postForm(t, "/oauth2/token", wrong, f.onB())
		}, want: kept},
	}
}

// ---------------------------------------------------------------------------
// Hole 11: reusing a rotated refresh token ends the family, every access
// token it ever issued included.

func hole11Cases() []attack {
	var family []tokenResponse
	revoked := invalidGrant
	revoked.check = func(t *testing.T, f *fixture, _ response, _ []seen) {
		for _, tok := range family {
			f.accessRevoked(t, tok.AccessToken)
		}
		f.assert(t, invalidGrant, f.refresh(t, family[len(family)-1].RefreshToken, f.onB()), nil)
	}
	return []attack{
		{name: "hole 11: reused refresh token revokes the whole family", send: func(t *testing.T, f *fixture) response {
			first := f.tokens(t, f.client)
			second := decodeTokens(t, f.refresh(t, first.RefreshToken))
			family = []tokenResponse{first, second, decodeTokens(t, f.refresh(t, second.RefreshToken, f.onB()))}
			return f.refresh(t, first.RefreshToken, f.onB())
		}, want: revoked},
	}
}

// ---------------------------------------------------------------------------
// Hole 12: registrations are capped, and limited per client address.

func hole12Cases() []attack {
	var uris []string
	for i := range 11 {
		uris = append(uris, fmt.Sprintf("http://127.0.0.1/cb-%d", i))
	}
	register := func(metadata map[string]any) func(*testing.T, *fixture) response {
		return func(t *testing.T, f *fixture) response { return f.register(t, metadata) }
	}
	return []attack{
		{name: "hole 12: 11 redirect URIs", send: register(map[string]any{"redirect_uris": uris, "token_endpoint_auth_method": "none"}),
			want: want{status: http.StatusBadRequest, oauthError: "invalid_redirect_uri", body: "at most 10 redirect_uris may be registered"}},
		{name: "hole 12: metadata over 16 KiB", send: register(map[string]any{
			"redirect_uris": []string{redirectURI}, "token_endpoint_auth_method": "none", "x_padding": strings.Repeat("p", 17<<10),
		}), want: want{status: http.StatusBadRequest, oauthError: "invalid_client_metadata", body: "registration body too large"}},
		{name: "hole 12: registration limit with spoofed X-Forwarded-For", send: func(t *testing.T, f *fixture) response {
			metadata := map[string]any{"redirect_uris": []string{redirectURI}, "token_endpoint_auth_method": "none"}
			registered(t, f.register(t, metadata, f.onC(), spoofedFor(0)))
			return f.register(t, metadata, f.onC(), spoofedFor(1))
		}, want: retryAfter(oauthError(http.StatusTooManyRequests, "slow_down"))},
	}
}

// ---------------------------------------------------------------------------
// Hole 13: the injector refuses secrets in the cluster-wide sidecar
// defaults. No request: the injector checks the file at start-up, so the
// row asserts the check's error.

func hole13Cases() []attack {
	docs := map[string]string{
		"oauth.signing_keys":         "oauth: {signing_keys: \"-----BEGIN EC PRIVATE KEY-----\\nx\\n-----END EC PRIVATE KEY-----\"}\n",
		"oauth.introspection_secret": "oauth: {introspection_secret: s3cret}\n",
		"":                           "oauth: {signing_keys_file: /secrets/keys.pem, access_token_ttl: 5m}\n", // no secret: accepted
	}
	errs := map[string]error{}
	return []attack{
		{name: "hole 13: signing keys and introspection secret in the sidecar defaults", send: func(*testing.T, *fixture) response {
			for setting, doc := range docs {
				errs[setting] = app.CheckProxyDefaults([]byte(doc))
			}
			return response{}
		}, want: want{status: anyStatus, check: func(t *testing.T, _ *fixture, _ response, _ []seen) {
			for setting, err := range errs {
				if refused := errors.Is(err, app.ErrSecretInDefaults); refused != (setting != "") {
					t.Errorf("defaults %q: err = %v, want ErrSecretInDefaults: %v", docs[setting], err, setting != "")
				}
			}
		}}},
	}
}
