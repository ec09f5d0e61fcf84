package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
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
func facadeAuthorize(t *testing.T, e *env, public string, replicas ...*replica) *facadeClient {
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
func TestOAuthFacadeRefreshRaceRevokesWholeFamily(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	args := []string{"--oauth-scopes", "mcp:tools,offline_access"}
	a := e.start(t, proxyOptions{args: args})
	b := e.start(t, proxyOptions{args: append(append([]string(nil), args...), "--external-url", a.URL)})
	c := facadeAuthorize(t, e, a.URL, a, b)

	first := c.tok
	before := tokens(t, c.refresh(t, first.RefreshToken))

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
