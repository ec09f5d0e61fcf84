package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// consentCopy is where the consent page's screenshot is also saved, so a
// person can look at what users see.
const consentCopy = "/tmp/consent.png"

// TestBrowser starts one environment and one Chromium, then runs each flow
// in its own browser context (its own cookies), so every flow starts logged
// out.
func TestBrowser(t *testing.T) {
	e := newEnv(t)
	browser := startBrowser(t)

	t.Run("cookie login", func(t *testing.T) { testCookieLogin(t, e, browser) })
	t.Run("consent approve", func(t *testing.T) { testConsentApprove(t, e, browser) })
	t.Run("consent deny", func(t *testing.T) { testConsentDeny(t, e, browser) })
	t.Run("cross-site logout asks first", func(t *testing.T) { testCrossSiteLogout(t, e, browser) })
}

// sessionInfo is the part of /oauth2/session the test checks.
type sessionInfo struct {
	Authenticated bool `json:"authenticated"`
	User          struct {
		Subject string   `json:"sub"`
		Email   string   `json:"email"`
		Groups  []string `json:"groups"`
	} `json:"user"`
}

// testCookieLogin: the proxy's root sends the browser to the provider, the
// user logs in, and the browser lands on the upstream's page with the
// identity the proxy forwarded; the session endpoint in the same browser
// knows the user.
func testCookieLogin(t *testing.T, e *env, browser context.Context) {
	b := newTab(t, browser)
	b.do("opening the proxy", chromedp.Navigate(e.proxy+"/"))
	b.loginAtProvider(e.idp)

	b.do("waiting for the upstream page", chromedp.WaitVisible(chromedp.ID("hello")))
	if loc := b.location(); loc != e.proxy+"/" {
		t.Errorf("after login the browser is at %s, want %s/", loc, e.proxy)
	}
	if got, want := b.text("#hello"), "Hello, "+oidcprovider.DemoEmail; got != want {
		t.Errorf("upstream page says %q, want %q", got, want)
	}
	if got := b.text("#user"); got != oidcprovider.DemoUserID {
		t.Errorf("upstream saw X-Forwarded-User %q, want %q", got, oidcprovider.DemoUserID)
	}

	b.do("opening the session endpoint",
		chromedp.Navigate(e.proxy+"/oauth2/session"),
		chromedp.WaitReady(chromedp.CSS("pre")),
	)
	raw := b.text("pre")
	var info sessionInfo
	if err := json.Unmarshal([]byte(raw), &info); err != nil {
		t.Fatalf("/oauth2/session in the browser is not JSON: %v: %q", err, raw)
	}
	if !info.Authenticated || info.User.Subject != oidcprovider.DemoUserID || info.User.Email != oidcprovider.DemoEmail {
		t.Errorf("/oauth2/session = %s, want the authenticated demo user %s <%s>", raw, oidcprovider.DemoUserID, oidcprovider.DemoEmail)
	}
	if strings.Join(info.User.Groups, ",") != strings.Join(oidcprovider.DemoGroups(), ",") {
		t.Errorf("/oauth2/session groups = %v, want %v", info.User.Groups, oidcprovider.DemoGroups())
	}
}

// testCrossSiteLogout: a logout link on another site (here http://localhost,
// a different site from the proxy's http://127.0.0.1) shows Chromium's real
// Fetch Metadata to the proxy, which answers with a confirmation page and
// keeps the session; confirming there (a POST with the proxy's own Origin)
// logs the user out.
func testCrossSiteLogout(t *testing.T, e *env, browser context.Context) {
	b := newTab(t, browser)
	b.do("opening the proxy", chromedp.Navigate(e.proxy+"/"))
	b.loginAtProvider(e.idp)
	b.do("waiting for the upstream page", chromedp.WaitVisible(chromedp.ID("hello")))

	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!doctype html><html><body><a id="out" href="`+e.proxy+`/oauth2/logout">free prizes</a></body></html>`)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)

	b.do("following another site's logout link",
		chromedp.Navigate(evilURL),
		chromedp.Click(chromedp.ID("out")),
		chromedp.WaitVisible(chromedp.CSS(`form[action="logout"] button`)),
	)
	if loc := b.location(); loc != e.proxy+"/oauth2/logout" {
		t.Fatalf("confirmation page at %s, want %s/oauth2/logout", loc, e.proxy)
	}
	if info := b.session(e); !info.Authenticated {
		t.Fatal("another site's link ended the session before the user confirmed")
	}

	b.do("confirming on the proxy's page",
		chromedp.Navigate(evilURL),
		chromedp.Click(chromedp.ID("out")),
		chromedp.WaitVisible(chromedp.CSS(`form[action="logout"] button`)),
		chromedp.Click(chromedp.CSS(`form[action="logout"] button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`form[action="logout"]`)),
	)
	if loc := b.location(); !strings.HasPrefix(loc, e.idp.Issuer()) {
		t.Errorf("after the confirmed logout the browser is at %s, want the provider's end_session endpoint under %s", loc, e.idp.Issuer())
	}
	if info := b.session(e); info.Authenticated {
		t.Fatal("the confirmed logout left the session usable")
	}
}

// session reads /oauth2/session in the tab (401 JSON when logged out).
func (b *tab) session(e *env) sessionInfo {
	b.tb.Helper()
	b.do("opening the session endpoint",
		chromedp.Navigate(e.proxy+"/oauth2/session"),
		chromedp.WaitReady(chromedp.CSS("pre")),
	)
	var info sessionInfo
	if raw := b.text("pre"); json.Unmarshal([]byte(raw), &info) != nil {
		b.tb.Fatalf("/oauth2/session is not JSON: %q", raw)
	}
	return info
}

// testConsentApprove: an MCP client registers, sends the user's browser to
// the façade's authorize endpoint, the user logs in and approves on the
// consent page, and the client redeems the code for a token that opens an
// MCP session.
func testConsentApprove(t *testing.T, e *env, browser context.Context) {
	meta := discover(t, e.proxy)
	catcher := startRedirectCatcher(t)
	const clientName = "Browser Test Client (approve)"
	clientID := register(t, meta.RegistrationEndpoint, clientName, catcher.URL)
	conf := &oauth2.Config{
		ClientID:    clientID,
		RedirectURL: catcher.URL,
		Endpoint: oauth2.Endpoint{
			AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	resource := e.proxy + "/mcp"
	verifier := oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resource))

	b := newTab(t, browser)
	b.do("opening the authorization URL", chromedp.Navigate(authURL))
	b.loginAtProvider(e.idp)
	b.do("waiting for the consent page", chromedp.WaitVisible(chromedp.ID("approve")))
	assertConsentPage(t, b, e.proxy, clientName, resource, catcher.URL)

	shot := b.screenshot()
	assertPNG(t, shot)
	if err := os.WriteFile(filepath.Join(t.TempDir(), "consent.png"), shot, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(consentCopy, shot, 0o644); err != nil {
		t.Errorf("saving a copy of the consent screenshot: %v", err)
	}

	b.do("approving", chromedp.Click(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.ID("received")))
	if loc := b.location(); !strings.HasPrefix(loc, catcher.URL+"?") {
		t.Errorf("after approval the browser is at %s, want the client's redirect URI %s", loc, catcher.URL)
	}
	q := catcher.next(t)
	if q.Get("error") != "" {
		t.Fatalf("redirect carried error %q (%s), want a code", q.Get("error"), q.Get("error_description"))
	}
	code := q.Get("code")
	if code == "" {
		t.Fatalf("redirect without code (parameters: %v)", slices.Sorted(maps.Keys(q)))
	}
	if q.Get("state") != state {
		t.Errorf("redirect state = %q, want the client's %q", q.Get("state"), state)
	}
	if q.Get("iss") != meta.Issuer {
		t.Errorf("redirect iss = %q, want the metadata issuer %q", q.Get("iss"), meta.Issuer)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	if err != nil {
		t.Fatalf("exchanging the code: %v", err)
	}
	if tok.AccessToken == "" || !strings.EqualFold(tok.Type(), "Bearer") {
		t.Fatalf("token response: type %q, access token present %v", tok.Type(), tok.AccessToken != "")
	}

	// The x/oauth2 client adds the bearer token to every request: what an
	// MCP client does after the authorization flow.
	transport := &mcp.StreamableClientTransport{Endpoint: resource, HTTPClient: conf.Client(ctx, tok)}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "browser-test", Version: "v1"}, nil).Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("MCP initialize with the access token: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %v %+v", err, res)
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var who mcpserver.WhoAmI
	if err := json.Unmarshal(raw, &who); err != nil {
		t.Fatalf("whoami result %s: %v", raw, err)
	}
	if got := who.Headers["X-Forwarded-Email"]; got != oidcprovider.DemoEmail {
		t.Errorf("MCP server saw X-Forwarded-Email %q, want %q (all: %v)", got, oidcprovider.DemoEmail, who.Headers)
	}
	if len(who.Leaked) > 0 {
		t.Errorf("credentials leaked to the MCP server: %v", who.Leaked)
	}
}

// testConsentDeny: the user logs in and denies; the client gets
// access_denied with its state and no code.
func testConsentDeny(t *testing.T, e *env, browser context.Context) {
	meta := discover(t, e.proxy)
	catcher := startRedirectCatcher(t)
	const clientName = "Browser Test Client (deny)"
	clientID := register(t, meta.RegistrationEndpoint, clientName, catcher.URL)
	conf := &oauth2.Config{
		ClientID:    clientID,
		RedirectURL: catcher.URL,
		Endpoint:    oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint},
	}
	resource := e.proxy + "/mcp"
	state := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", resource))

	b := newTab(t, browser)
	b.do("opening the authorization URL", chromedp.Navigate(authURL))
	b.loginAtProvider(e.idp)
	b.do("waiting for the consent page", chromedp.WaitVisible(chromedp.ID("deny")))
	assertConsentPage(t, b, e.proxy, clientName, resource, catcher.URL)

	b.do("denying", chromedp.Click(chromedp.ID("deny")), chromedp.WaitVisible(chromedp.ID("received")))
	if loc := b.location(); !strings.HasPrefix(loc, catcher.URL+"?") {
		t.Errorf("after denial the browser is at %s, want the client's redirect URI %s", loc, catcher.URL)
	}
	q := catcher.next(t)
	if q.Get("error") != "access_denied" {
		t.Errorf("redirect error = %q, want access_denied (code present: %v)", q.Get("error"), q.Has("code"))
	}
	if q.Has("code") {
		t.Errorf("a denied request carried a code")
	}
	if q.Get("state") != state {
		t.Errorf("redirect state = %q, want the client's %q", q.Get("state"), state)
	}
	if q.Get("iss") != meta.Issuer {
		t.Errorf("redirect iss = %q, want the metadata issuer %q", q.Get("iss"), meta.Issuer)
	}
}

// assertConsentPage checks the page is the proxy's and tells the user who
// asks, for what, as whom, and where they will be sent.
func assertConsentPage(t *testing.T, b *tab, proxy, clientName, resource, redirectURI string) {
	t.Helper()
	if loc := b.location(); !strings.HasPrefix(loc, proxy+"/oauth2/consent") {
		t.Errorf("consent page at %s, want %s/oauth2/consent", loc, proxy)
	}
	body := b.text("body")
	redirectHost := strings.TrimPrefix(strings.TrimSuffix(redirectURI, "/callback"), "http://")
	for _, want := range []string{clientName, resource, oidcprovider.DemoEmail, redirectHost} {
		if !strings.Contains(body, want) {
			t.Errorf("consent page does not show %q:\n%s", want, body)
		}
	}
}

// assertPNG checks a screenshot is a PNG image with a size.
func assertPNG(t *testing.T, img []byte) {
	t.Helper()
	if !bytes.HasPrefix(img, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot (%d bytes) does not start with the PNG signature", len(img))
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if cfg.Width == 0 || cfg.Height == 0 {
		t.Fatalf("screenshot is %dx%d", cfg.Width, cfg.Height)
	}
}

// asMetadata is the part of the RFC 8414 document a client uses.
type asMetadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	RegistrationEndpoint  string `json:"registration_endpoint"`
}

// discover reads the façade's authorization server metadata, as an MCP
// client does.
func discover(t *testing.T, proxy string) asMetadata {
	t.Helper()
	var m asMetadata
	getJSON(t, proxy+"/.well-known/oauth-authorization-server", &m)
	if m.AuthorizationEndpoint == "" || m.TokenEndpoint == "" || m.RegistrationEndpoint == "" || m.Issuer == "" {
		t.Fatalf("authorization server metadata lacks endpoints: %+v", m)
	}
	return m
}

// register performs RFC 7591 dynamic registration of a public client.
func register(t *testing.T, endpoint, name, redirectURI string) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"client_name":                name,
		"redirect_uris":              []string{redirectURI},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(endpoint, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("registration: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("registration: %s: %s", resp.Status, raw)
	}
	var out struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.ClientID == "" {
		t.Fatalf("registration response %s: %v", raw, err)
	}
	return out.ClientID
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, raw)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, raw)
	}
}
