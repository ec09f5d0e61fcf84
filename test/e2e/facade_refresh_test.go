package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
)

// facadeClient is an MCP client that went through the façade's
// authorization flow: its registration and the tokens it was issued.
type facadeClient struct {
	cfg      oauth2.Config
	tok      *oauth2.Token
	tokenURL string
	http     *http.Client
}

// facadeAuthorize runs the SDK client through discovery, registration,
// login at the provider, consent and the code exchange against the façade
// served at public (requests spread over replicas) and returns its tokens.
func facadeAuthorize(t testing.TB, e *env, public string, replicas ...*replica) *facadeClient {
	t.Helper()
	names := map[*replica]string{}
	for i, r := range replicas {
		names[r] = string(rune('A' + i))
	}
	authClient := &http.Client{Transport: newRouter(public, names, alternate(replicas...)), Timeout: waitFor}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := mcpclient.Connect(ctx, mcpclient.Options{
		Endpoint:         public + "/mcp",
		Login:            func(ctx context.Context, u string) (*url.URL, error) { return e.idp.Login(ctx, nil, u) },
		AuthHTTPClient:   authClient,
		BrowserTransport: newRouter(public, names, alternate(replicas...)),
		MCPHTTPClient:    authClient,
	})
	if err != nil {
		t.Fatalf("SDK client through the OAuth flow: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cfg, err := c.Tokens.Config()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Tokens.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("the façade issued no refresh token")
	}
	return &facadeClient{cfg: cfg, tok: tok, tokenURL: public + "/oauth2/token", http: authClient}
}

// refreshAt sends one refresh_token grant for rt to base's token endpoint
// (a particular replica) and returns the response.
func (c *facadeClient) refreshAt(base, rt string) (response, error) {
	form, h := clientForm(c.cfg, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	req, err := http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := (&http.Client{Timeout: waitFor}).Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// refresh is refreshAt through the client's own routing, failing the test
// on a transport error.
func (c *facadeClient) refresh(t *testing.T, rt string) response {
	t.Helper()
	form, h := clientForm(c.cfg, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	return post(t, c.http, c.tokenURL, "application/x-www-form-urlencoded", form.Encode(), h)
}

// tokens decodes a successful token response.
func tokens(t *testing.T, r response) oauth2.Token {
	t.Helper()
	var tok oauth2.Token
	if r.Status != http.StatusOK {
		t.Fatalf("token response = %s, want 200", r)
	}
	if err := json.Unmarshal(r.Body, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token response %s: %v", r.Body, err)
	}
	return tok
}

// Two replicas sharing Redis receive concurrent refreshes of the same
// refresh token. Exactly one wins; the reuse revokes the family, and
// afterwards every access token the family ever issued (the first one, the
// one before the race and the race winner's) is refused at the MCP endpoint
// of both replicas, as is the winner's refresh token.
//
// The race happens past the upstream recheck interval, so each successful
// refresh renews the login at the provider: exactly one call reaches it.
func TestOAuthFacadeRefreshRaceRevokesWholeFamily(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: oidcprovider.Options{IDTokenLifetime: 24 * time.Hour}})
	// Access tokens outlive the clock shift, so a refusal below is the
	// revocation, not expiry.
	args := []string{"--oauth-scopes", "mcp:tools,offline_access", "--oauth-access-token-ttl", "3h",
		"--oidc-scopes", "openid,profile,email,offline_access"}
	clock := &fakeclock.Shifted{}
	a := e.start(t, proxyOptions{args: args, now: clock.Now})
	b := e.start(t, proxyOptions{args: append(append([]string(nil), args...), "--external-url", a.URL), now: clock.Now})
	c := facadeAuthorize(t, e, a.URL, a, b)

	first := c.tok
	before := tokens(t, c.refresh(t, first.RefreshToken))
	clock.Set(61 * time.Minute)
	upstreamBefore := e.idp.RefreshRequests()

	const racers = 8 // bounded: four per replica
	results := make([]response, racers)
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		base := a.URL
		if i%2 == 1 {
			base = b.URL
		}
		wg.Go(func() {
			<-start
			results[i], errs[i] = c.refreshAt(base, before.RefreshToken)
		})
	}
	close(start)
	wg.Wait()
	var winners []oauth2.Token
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		switch r.Status {
		case http.StatusOK:
			winners = append(winners, tokens(t, r))
		case http.StatusBadRequest:
			if code := oauthErrorCode(t, r); code != "invalid_grant" {
				t.Errorf("racer %d: error %q, want invalid_grant", i, code)
			}
		default:
			t.Errorf("racer %d: %s, want 200 or 400 invalid_grant", i, r)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d concurrent refreshes of one token succeeded, want exactly 1", len(winners))
	}
	if got := e.idp.RefreshRequests() - upstreamBefore; got != 1 {
		t.Errorf("the race sent %d refreshes to the provider, want exactly 1", got)
	}

	access := map[string]string{
		"first access token":       first.AccessToken,
		"access token before race": before.AccessToken,
		"race winner's token":      winners[0].AccessToken,
	}
	for _, rep := range []*replica{a, b} {
		for what, tok := range access {
			r := mcpPost(t, http.DefaultClient, rep.URL+"/mcp", tok, nil)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("%s at %s after the family was revoked = %s, want 401", what, rep.URL, r)
			}
		}
	}
	if r := c.refresh(t, winners[0].RefreshToken); r.Status != http.StatusBadRequest || oauthErrorCode(t, r) != "invalid_grant" {
		t.Errorf("race winner's refresh token = %s, want 400 invalid_grant", r)
	}
}

// The façade's refresh families are held to the user's standing at the
// identity provider: a real provider (test/oidcprovider) disables the user
// or changes their groups, and after the recheck interval (default 1h, the
// replica's clock moved forward) the next refresh fails with invalid_grant
// and the family's access tokens stop working. Families end at their
// absolute lifetime (default 30 days) however often they are refreshed, and
// without an upstream refresh token at the browser session's end
// (session.ttl, default 12h). Authorization rules apply on every refresh,
// also right after a reload. An unreachable provider answers 503 and keeps
// the refresh token usable.
func TestOAuthFacadeRefreshFollowsUpstream(t *testing.T) {
	offline := []string{"--oidc-scopes", "openid,profile,email,offline_access"}
	for _, tc := range []struct {
		name string
		// args are extra replica flags; the façade's access tokens live 2h
		// so that a refused family is told apart from an expired token.
		args []string
		run  func(t *testing.T, s *refreshScenario)
	}{
		{name: "user disabled at the provider", args: offline, run: func(t *testing.T, s *refreshScenario) {
			before := s.idp.RefreshRequests()
			tok := s.refreshOK(t, s.tok.RefreshToken) // within the interval: no upstream call
			if got := s.idp.RefreshRequests() - before; got != 0 {
				t.Fatalf("refresh within the recheck interval reached the provider %d times, want 0", got)
			}
			s.clock.Set(61 * time.Minute)
			tok = s.refreshOK(t, tok.RefreshToken) // rechecked upstream: still fine
			if got := s.idp.RefreshRequests() - before; got != 1 {
				t.Fatalf("refresh past the recheck interval reached the provider %d times, want 1", got)
			}
			s.idp.DisableUser(oidcprovider.DemoUserID)
			s.clock.Set(123 * time.Minute)
			s.refreshRefused(t, tok.RefreshToken)
			s.accessRefused(t, tok.AccessToken)
		}},
		{name: "user removed from the allowed group", args: append(slices.Clone(offline), "--authz-allowed-groups", "mcp-users"), run: func(t *testing.T, s *refreshScenario) {
			s.idp.SetGroups(oidcprovider.DemoUserID, []string{"contractors"})
			tok := s.refreshOK(t, s.tok.RefreshToken) // the family's claims are an hour old at most
			s.clock.Set(61 * time.Minute)
			s.refreshRefused(t, tok.RefreshToken)
			s.accessRefused(t, tok.AccessToken)
		}},
		{name: "authorization rules reloaded", args: offline, run: func(t *testing.T, s *refreshScenario) {
			tok := s.refreshOK(t, s.tok.RefreshToken)
			s.rep.reload(t, "--authz-allowed-groups", "nobody-has-this-group")
			s.refreshRefused(t, tok.RefreshToken)
		}},
		{name: "absolute lifetime", args: offline, run: func(t *testing.T, s *refreshScenario) {
			s.clock.Set(20 * 24 * time.Hour)
			tok := s.refreshOK(t, s.tok.RefreshToken)
			s.clock.Set(30*24*time.Hour + time.Minute)
			s.refreshRefused(t, tok.RefreshToken)
		}},
		{name: "no upstream refresh token: ends with the browser session", run: func(t *testing.T, s *refreshScenario) {
			s.clock.Set(11 * time.Hour)
			tok := s.refreshOK(t, s.tok.RefreshToken)
			if got := s.idp.RefreshRequests(); got != 0 {
				t.Fatalf("provider saw %d refreshes, want 0 (it issued no refresh token)", got)
			}
			s.clock.Set(12*time.Hour + time.Minute)
			s.refreshRefused(t, tok.RefreshToken)
		}},
		{name: "provider unreachable", args: offline, run: func(t *testing.T, s *refreshScenario) {
			s.clock.Set(61 * time.Minute)
			s.down.SetDown(true)
			r := s.client.refresh(t, s.tok.RefreshToken)
			if r.Status != http.StatusServiceUnavailable || oauthErrorCode(t, r) != "temporarily_unavailable" {
				t.Fatalf("refresh while the provider is unreachable = %s, want 503 temporarily_unavailable", r)
			}
			s.down.SetDown(false)
			tok := s.refreshOK(t, s.tok.RefreshToken) // the same token, retried
			s.clock.Set(61*time.Minute + 10*time.Second)
			s.refreshOK(t, tok.RefreshToken)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{idp: oidcprovider.Options{IDTokenLifetime: 60 * 24 * time.Hour}})
			clock := &fakeclock.Shifted{}
			down := &stack.Outage{Base: http.DefaultTransport}
			args := append([]string{"--oauth-scopes", "mcp:tools,offline_access", "--oauth-access-token-ttl", "2h"}, tc.args...)
			rep := e.start(t, proxyOptions{args: args, now: clock.Now, httpClient: &http.Client{Transport: down, Timeout: waitFor}})
			c := facadeAuthorize(t, e, rep.URL, rep)
			tc.run(t, &refreshScenario{idp: e.idp, rep: rep, clock: clock, down: down, client: c, tok: c.tok})
		})
	}
}

// refreshScenario is one façade client against one replica whose clock and
// path to the provider the test controls.
type refreshScenario struct {
	idp    *oidcprovider.Provider
	rep    *replica
	clock  *fakeclock.Shifted
	down   *stack.Outage
	client *facadeClient
	tok    *oauth2.Token
}

func (s *refreshScenario) refreshOK(t *testing.T, rt string) oauth2.Token {
	t.Helper()
	tok := tokens(t, s.client.refresh(t, rt))
	if r := mcpPost(t, http.DefaultClient, s.rep.URL+"/mcp", tok.AccessToken, nil); r.Status != http.StatusOK {
		t.Fatalf("refreshed access token at /mcp = %s, want 200", r)
	}
	return tok
}

func (s *refreshScenario) refreshRefused(t *testing.T, rt string) {
	t.Helper()
	if r := s.client.refresh(t, rt); r.Status != http.StatusBadRequest || oauthErrorCode(t, r) != "invalid_grant" {
		t.Fatalf("refresh = %s, want 400 invalid_grant", r)
	}
	// The family is over: retrying does not help either.
	if r := s.client.refresh(t, rt); r.Status != http.StatusBadRequest || oauthErrorCode(t, r) != "invalid_grant" {
		t.Fatalf("second refresh = %s, want 400 invalid_grant", r)
	}
}

func (s *refreshScenario) accessRefused(t *testing.T, at string) {
	t.Helper()
	r := mcpPost(t, http.DefaultClient, s.rep.URL+"/mcp", at, nil)
	assertChallenge(t, r, http.StatusUnauthorized, "invalid_token", s.rep.URL+"/.well-known/oauth-protected-resource/mcp")
}
