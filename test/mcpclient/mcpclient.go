// Package mcpclient runs the official MCP Go SDK client through the MCP
// authorization flow without a person in front of a browser: discovery,
// dynamic client registration, login at the OpenID provider, the proxy's
// consent page and the token exchange. The demo and the end-to-end tests
// share it, so both prove the same thing a real MCP client does. It does not
// depend on package testing.
package mcpclient

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
)

// DefaultRedirectURI is the loopback redirect URI (RFC 8252) the client
// registers. Nothing listens there: Browser stops at the redirect and reads
// the code from its URL, as a native app's loopback listener would.
const DefaultRedirectURI = "http://127.0.0.1/mcp-oauth-callback"

// maxHops bounds the redirects and pages one authorization may take.
const maxHops = 20

// maxBody bounds the pages Browser reads.
const maxBody = 1 << 20

// ErrNoConsentForm means the authorization server answered with a page
// that is not the consent form Browser knows how to approve.
var ErrNoConsentForm = errors.New("mcpclient: unexpected page during authorization")

// LoginFunc logs the user in at the OpenID provider. It gets the provider's
// authorization URL (where the proxy sent the browser) and returns the
// proxy's callback URL carrying code and state, without requesting it.
// oidcprovider.Provider.Login has this shape.
type LoginFunc func(ctx context.Context, authURL string) (*url.URL, error)

// Browser plays the user's browser in the authorization code flow. Its Fetch
// method is an auth.AuthorizationCodeFetcher: it opens the authorization
// URL on the proxy, follows the proxy to the provider's login (through
// Login), delivers the callback to the proxy, approves the consent page and
// returns the code from the final redirect to the client.
type Browser struct {
	// Login logs the user in at the provider. Required.
	Login LoginFunc
	// RedirectURI is the client's redirect URI; the flow ends when a
	// redirect points there. Default DefaultRedirectURI.
	RedirectURI string
	// Transport carries the browser's requests to the proxy (a test may
	// route them to several replicas). Default http.DefaultTransport.
	Transport http.RoundTripper
	// Log, when set, receives one short line per step. Lines never
	// contain codes, tokens or cookies.
	Log func(string)

	authorizations atomic.Int32
	consents       atomic.Int32
}

// Authorizations counts completed Fetch calls, so a caller can tell a
// silent re-authorization from a token that kept working.
func (b *Browser) Authorizations() int { return int(b.authorizations.Load()) }

// Consents counts consent pages approved (a remembered consent skips the
// page).
func (b *Browser) Consents() int { return int(b.consents.Load()) }

func (b *Browser) logf(format string, args ...any) {
	if b.Log != nil {
		b.Log(fmt.Sprintf(format, args...))
	}
}

func (b *Browser) redirectURI() string {
	if b.RedirectURI == "" {
		return DefaultRedirectURI
	}
	return b.RedirectURI
}

var _ auth.AuthorizationCodeFetcher = (*Browser)(nil).Fetch

// Fetch runs the user's part of the flow for args.URL, the authorization
// server's /authorize URL the SDK built.
func (b *Browser) Fetch(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
	if b.Login == nil {
		return nil, errors.New("mcpclient: Browser.Login is required")
	}
	redirect, err := url.Parse(b.redirectURI())
	if err != nil {
		return nil, fmt.Errorf("mcpclient: redirect URI: %w", err)
	}
	start, err := url.Parse(args.URL)
	if err != nil {
		return nil, fmt.Errorf("mcpclient: authorization URL: %w", err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("mcpclient: cookie jar: %w", err)
	}
	client := &http.Client{
		Jar:           jar,
		Transport:     b.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	next, err := navigate(ctx, http.MethodGet, start.String(), nil)
	if err != nil {
		return nil, err
	}
	for range maxHops {
		u := next.URL
		switch {
		case sameEndpoint(u, redirect):
			return b.result(u)
		case u.Scheme != start.Scheme || u.Host != start.Host:
			// Neither the proxy nor the client: the provider's login.
			cb, err := b.Login(ctx, u.String())
			if err != nil {
				return nil, fmt.Errorf("mcpclient: login at the provider: %w", err)
			}
			b.logf("logged in at the OpenID provider")
			if next, err = navigate(ctx, http.MethodGet, cb.String(), nil); err != nil {
				return nil, err
			}
			continue
		}
		resp, err := client.Do(next)
		if err != nil {
			return nil, fmt.Errorf("mcpclient: %s %s: %w", next.Method, u.Path, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		_ = resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("mcpclient: reading %s: %w", u.Path, err)
		}
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			// Resolved against the URL this browser asked for (a relative
			// Location is common), not whatever the transport dialled.
			loc, err := u.Parse(resp.Header.Get("Location"))
			if err != nil || resp.Header.Get("Location") == "" {
				return nil, fmt.Errorf("mcpclient: redirect from %s without a valid Location: %v", u.Path, err)
			}
			if next, err = navigate(ctx, http.MethodGet, loc.String(), nil); err != nil {
				return nil, err
			}
		case resp.StatusCode == http.StatusOK && isHTML(resp.Header):
			form, err := parseConsent(u, body)
			if err != nil {
				return nil, err
			}
			b.consents.Add(1)
			b.logf("approved the consent page")
			if next, err = navigate(ctx, http.MethodPost, form.action, form.values); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: %s %s answered %d: %s", ErrNoConsentForm, next.Method, u.Path, resp.StatusCode, snippet(body))
		}
	}
	return nil, fmt.Errorf("mcpclient: more than %d steps during authorization", maxHops)
}

// result reads the authorization response from the client's redirect URI.
func (b *Browser) result(u *url.URL) (*auth.AuthorizationResult, error) {
	q := u.Query()
	if e := q.Get("error"); e != "" {
		return nil, fmt.Errorf("mcpclient: authorization refused: %s: %s", e, q.Get("error_description"))
	}
	if q.Get("code") == "" {
		return nil, errors.New("mcpclient: redirect to the client without a code")
	}
	b.authorizations.Add(1)
	b.logf("redirected back to the client with an authorization code")
	return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
}

// navigate builds a request that looks like a browser navigation, so the
// proxy answers a missing session with a login redirect instead of a 401.
func navigate(ctx context.Context, method, target string, form url.Values) (*http.Request, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("mcpclient: request %s: %w", method, err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req, nil
}

func sameEndpoint(u, redirect *url.URL) bool {
	return u.Scheme == redirect.Scheme && u.Host == redirect.Host && u.Path == redirect.Path
}

func isHTML(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == "text/html"
}

var (
	formRe   = regexp.MustCompile(`(?is)<form[^>]*\baction="([^"]*)"`)
	hiddenRe = regexp.MustCompile(`(?is)<input[^>]*\btype="hidden"[^>]*\bname="([^"]*)"[^>]*\bvalue="([^"]*)"`)
	submitRe = regexp.MustCompile(`(?is)<button[^>]*\bname="([^"]*)"[^>]*\bvalue="(approve)"`)
)

type consentForm struct {
	action string
	values url.Values
}

// parseConsent extracts the consent form's action and hidden fields (the
// request id and the CSRF token) and chooses the approve button.
func parseConsent(page *url.URL, body []byte) (*consentForm, error) {
	m := formRe.FindSubmatch(body)
	submit := submitRe.FindSubmatch(body)
	if m == nil || submit == nil {
		return nil, fmt.Errorf("%w: %s has no consent form", ErrNoConsentForm, page.Path)
	}
	action, err := page.Parse(html.UnescapeString(string(m[1])))
	if err != nil {
		return nil, fmt.Errorf("mcpclient: consent form action: %w", err)
	}
	values := url.Values{}
	for _, h := range hiddenRe.FindAllSubmatch(body, -1) {
		values.Set(html.UnescapeString(string(h[1])), html.UnescapeString(string(h[2])))
	}
	values.Set(string(submit[1]), string(submit[2]))
	return &consentForm{action: action.String(), values: values}, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// Tokens is the token source the SDK's handler uses, kept where the caller
// can see it: it records the client the SDK registered and lets a caller
// force the refresh_token grant, which the SDK otherwise does only when the
// access token is about to expire. Plug NewTokenSource into
// auth.AuthorizationCodeHandlerConfig.NewTokenSource.
type Tokens struct {
	mu  sync.Mutex
	ctx context.Context
	cfg *oauth2.Config
	src oauth2.TokenSource
}

var _ oauth2.TokenSource = (*Tokens)(nil)

// NewTokenSource records cfg and returns t as the source for tok. The SDK
// calls it after every successful code exchange.
func (t *Tokens) NewTokenSource(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token) (oauth2.TokenSource, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ctx, t.cfg = ctx, cfg
	t.src = cfg.TokenSource(ctx, tok)
	return t, nil
}

// Token returns the current token (refreshing it when it expires, as the
// SDK's default source does).
func (t *Tokens) Token() (*oauth2.Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.src == nil {
		return nil, errors.New("mcpclient: no token yet")
	}
	tok, err := t.src.Token()
	if err != nil {
		return nil, fmt.Errorf("mcpclient: token: %w", err)
	}
	return tok, nil
}

// Config returns a copy of the OAuth client configuration the SDK built
// (client ID and secret from registration, endpoints from metadata).
func (t *Tokens) Config() (oauth2.Config, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cfg == nil {
		return oauth2.Config{}, errors.New("mcpclient: not authorized yet")
	}
	return *t.cfg, nil
}

// Refresh redeems the current refresh token now and makes the rotated
// tokens current, so the SDK's next request carries the new access token.
func (t *Tokens) Refresh(ctx context.Context) (*oauth2.Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.src == nil {
		return nil, errors.New("mcpclient: no token yet")
	}
	cur, err := t.src.Token()
	if err != nil {
		return nil, fmt.Errorf("mcpclient: current token: %w", err)
	}
	if cur.RefreshToken == "" {
		return nil, errors.New("mcpclient: the authorization server issued no refresh token")
	}
	if c, ok := t.ctx.Value(oauth2.HTTPClient).(*http.Client); ok {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, c)
	}
	tok, err := t.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: cur.RefreshToken}).Token()
	if err != nil {
		return nil, fmt.Errorf("mcpclient: refresh: %w", err)
	}
	t.src = t.cfg.TokenSource(t.ctx, tok)
	return tok, nil
}

// Options configure Connect.
type Options struct {
	// Endpoint is the MCP endpoint URL as users type it, e.g.
	// https://mcp.example.com/mcp. Required.
	Endpoint string
	// Login logs the user in at the provider. Required.
	Login LoginFunc
	// ClientName is sent in the registration. Default "mcpclient".
	ClientName string
	// RedirectURI defaults to DefaultRedirectURI.
	RedirectURI string
	// AuthHTTPClient carries discovery, registration and token requests.
	// Default http.DefaultClient.
	AuthHTTPClient *http.Client
	// BrowserTransport carries the browser's requests to the proxy.
	BrowserTransport http.RoundTripper
	// MCPHTTPClient carries the MCP requests. Default http.DefaultClient.
	MCPHTTPClient *http.Client
	// Log receives one short line per step of the browser part.
	Log func(string)
}

// Client is a connected MCP session with the pieces of its authorization.
type Client struct {
	Session *mcp.ClientSession
	Browser *Browser
	Tokens  *Tokens
}

// Close ends the MCP session.
func (c *Client) Close() error { return c.Session.Close() }

// Connect runs the MCP initialize handshake against opts.Endpoint with the
// SDK's authorization code handler and dynamic client registration. The
// first request is refused with 401; the SDK then discovers the protected
// resource and authorization server metadata, registers, sends Browser to
// /authorize, exchanges the code and retries with the bearer token.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if opts.Endpoint == "" || opts.Login == nil {
		return nil, errors.New("mcpclient: Endpoint and Login are required")
	}
	redirect := opts.RedirectURI
	if redirect == "" {
		redirect = DefaultRedirectURI
	}
	name := opts.ClientName
	if name == "" {
		name = "mcpclient"
	}
	browser := &Browser{Login: opts.Login, RedirectURI: redirect, Transport: opts.BrowserTransport, Log: opts.Log}
	tokens := &Tokens{}
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{
			Metadata: &oauthex.ClientRegistrationMetadata{
				ClientName:    name,
				RedirectURIs:  []string{redirect},
				GrantTypes:    []string{"authorization_code", "refresh_token"},
				ResponseTypes: []string{"code"},
			},
		},
		AuthorizationCodeFetcher: browser.Fetch,
		RequestRefreshToken:      true,
		Client:                   opts.AuthHTTPClient,
		NewTokenSource:           tokens.NewTokenSource,
	})
	if err != nil {
		return nil, fmt.Errorf("mcpclient: authorization handler: %w", err)
	}
	transport := &mcp.StreamableClientTransport{Endpoint: opts.Endpoint, HTTPClient: opts.MCPHTTPClient, OAuthHandler: handler}
	session, err := mcp.NewClient(&mcp.Implementation{Name: name, Version: "v1"}, nil).Connect(ctx, transport, nil)
	if err != nil {
		return nil, fmt.Errorf("mcpclient: MCP initialize through %s: %w", opts.Endpoint, err)
	}
	return &Client{Session: session, Browser: browser, Tokens: tokens}, nil
}

// StaticToken is an auth.OAuthHandler that sends one fixed bearer token and
// never starts a flow: for tokens obtained elsewhere (external mode) and for
// showing that a refused token stays refused.
type StaticToken string

var _ auth.OAuthHandler = StaticToken("")

// TokenSource returns the fixed token.
func (s StaticToken) TokenSource(context.Context) (oauth2.TokenSource, error) {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: string(s), TokenType: "Bearer"}), nil
}

// ErrRefused is returned by StaticToken.Authorize: the server refused the
// token and there is no flow to run.
var ErrRefused = errors.New("mcpclient: the server refused the bearer token")

// Authorize reports the refusal with the response's status and challenge.
func (s StaticToken) Authorize(_ context.Context, _ *http.Request, resp *http.Response) error {
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return fmt.Errorf("%w: %d (WWW-Authenticate: %s)", ErrRefused, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
}
