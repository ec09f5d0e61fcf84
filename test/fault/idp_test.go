package fault

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// Bounds of the IdP outage test.
const (
	// loginRefusedWithin: once the provider is unreachable, a new login is
	// answered 503 (not sent to the provider) within this long; the proxy
	// re-checks the provider at most every few seconds.
	loginRefusedWithin = 15 * time.Second
	// idpDownAnswer bounds each answer while the provider is down.
	idpDownAnswer = 5 * time.Second
)

// The OpenID provider goes away (its listener closed: connection refused).
//
// Promises: existing cookie sessions and façade bearer tokens keep working
// within their token lifetimes (nothing in the request path needs the
// provider); a login already at the provider whose callback arrives now gets
// a clear 503 (not a 500 or 502, no redirect back into a login); new logins
// get a clear 503 JSON error within loginRefusedWithin, with no redirect to
// the unreachable provider, so nothing loops; /readyz stays 200.
func TestIdPOutage(t *testing.T) {
	e := newEnv(t)
	p := e.start(t, "A", replicaOptions{})
	cookie := e.login(t, p, p)
	facade := e.facadeClient(t, p)
	bearer := bearerOf(t, facade)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A login that has reached the provider when it goes down.
	jar := newJar(t)
	browser := &http.Client{Jar: jar, Transport: p.client.Transport, Timeout: setupTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(p.external + "/oauth2/start?rd=/data")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	callback, err := e.idp.Login(ctx, nil, resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}

	if err := e.idp.Close(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()

	t.Run("existing sessions and tokens keep working", func(t *testing.T) {
		for name, c := range map[string]credential{"cookie": {cookie: cookie}, "bearer": bearer} {
			res := p.get(ctx, "/data", c, jsonAPI)
			if res.Status != http.StatusOK || res.Took > idpDownAnswer {
				t.Errorf("%s request with the provider down = %s in %s; promised 200 within %s", name, res, res.Took, idpDownAnswer)
			}
		}
		if _, err := callWhoami(ctx, facade.Session); err != nil {
			t.Errorf("MCP tools/call with a bearer token with the provider down: %v", err)
		}
		if res := p.getAdmin(ctx, "/readyz"); res.Status != http.StatusOK {
			t.Errorf("/readyz with the provider down = %s, want 200", res)
		}
	})

	// A valid authorization request of the registered MCP client: without
	// a browser session it needs a login at the provider.
	cfg, err := facade.Tokens.Config()
	if err != nil {
		t.Fatal(err)
	}
	authorize := url.Values{
		"response_type": {"code"}, "client_id": {cfg.ClientID}, "redirect_uri": {mcpclient.DefaultRedirectURI},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"},
		"state": {"fault"}, "resource": {p.external + "/mcp"},
	}

	t.Run("new logins get 503 and nothing loops", func(t *testing.T) {
		var last result
		if !waitfor.Poll(loginRefusedWithin, 100*time.Millisecond, func() bool {
			last = p.get(ctx, "/oauth2/start?rd=/data", credential{}, nil)
			return last.Status == http.StatusServiceUnavailable
		}) {
			t.Fatalf("/oauth2/start %s after the provider went down = %s Location %q; promised 503 within %s",
				time.Since(down).Round(time.Millisecond), last, last.Header.Get("Location"), loginRefusedWithin)
		}
		t.Logf("measured: new logins refused with 503 %s after the provider went down (bound %s)", time.Since(down).Round(time.Millisecond), loginRefusedWithin)
		for _, tc := range []struct {
			name, path string
			header     http.Header
		}{
			{"explicit start", "/oauth2/start?rd=/data", nil},
			{"browser navigation", "/data", http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}},
			{"façade authorize", "/oauth2/authorize?" + authorize.Encode(), http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}},
		} {
			// Redirects within the proxy (authorize to its consent page)
			// are followed, a few at most: a loop would exceed them.
			res := p.get(ctx, tc.path, credential{}, tc.header)
			for hops := 0; res.Status == http.StatusFound && strings.HasPrefix(res.Header.Get("Location"), p.external+"/") && hops < 3; hops++ {
				res = p.get(ctx, strings.TrimPrefix(res.Header.Get("Location"), p.external), credential{}, tc.header)
			}
			if res.Status != http.StatusServiceUnavailable || res.Header.Get("Location") != "" || errorCode(res) != "upstream_unavailable" || res.Header.Get("Retry-After") == "" {
				t.Errorf("%s with the provider down = %s Location %q Retry-After %q; promised 503 upstream_unavailable with Retry-After and no redirect",
					tc.name, res, res.Header.Get("Location"), res.Header.Get("Retry-After"))
			}
			if res.Took > idpDownAnswer {
				t.Errorf("%s answered in %s; promised within %s", tc.name, res.Took, idpDownAnswer)
			}
		}
	})
	t.Run("a login in flight gets 503 at the callback", func(t *testing.T) {
		deliver := *callback
		deliver.Host = mustParse(t, p.external).Host
		start := time.Now()
		resp, err := browser.Get(deliver.String())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		res := readResult(t, resp, start)
		if res.Status != http.StatusServiceUnavailable || res.Header.Get("Location") != "" || errorCode(res) != "upstream_unavailable" {
			t.Fatalf("callback with the provider down = %s Location %q; promised 503 upstream_unavailable without a redirect", res, res.Header.Get("Location"))
		}
		if res.Took > idpDownAnswer {
			t.Errorf("callback answered in %s; promised within %s", res.Took, idpDownAnswer)
		}
	})
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
