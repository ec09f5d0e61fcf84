package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// wellKnownSuffix is the discovery path appended to an issuer. Options.Issuer
// may carry it because the original project's OIDC_DISCOVERY_URL does.
const wellKnownSuffix = "/.well-known/openid-configuration"

// defaultScopes are requested when Options.Scopes is empty: enough for the
// identity headers the proxy forwards.
func defaultScopes() []string { return []string{gooidc.ScopeOpenID, "profile", "email"} }

// allowedSigningAlg reports whether an ID token algorithm is accepted,
// whatever the discovery document advertises: only asymmetric ones, so
// "none" and HMAC (keyed with the client secret, or forgeable by anyone who
// knows a public key) are never accepted.
func allowedSigningAlg(alg string) bool {
	switch alg {
	case gooidc.RS256, gooidc.RS384, gooidc.RS512,
		gooidc.ES256, gooidc.ES384, gooidc.ES512,
		gooidc.PS256, gooidc.PS384, gooidc.PS512,
		gooidc.EdDSA:
		return true
	}
	return false
}

// Options configure a RelyingParty.
type Options struct {
	// Issuer is the provider's issuer URL, or its full discovery URL ending
	// in /.well-known/openid-configuration (as OIDC_DISCOVERY_URL is).
	Issuer string
	// ClientID is the proxy's client at the provider; it is also the
	// audience every ID token must carry.
	ClientID string
	// ClientSecret empty makes the proxy a public client (PKCE only).
	ClientSecret string
	// Scopes default to "openid profile email"; "openid" is always added.
	// Add "offline_access" to receive refresh tokens from providers that
	// require it.
	Scopes []string
	// UseUserInfo fetches the userinfo endpoint after the code exchange (and
	// after refreshes that return an ID token) and merges its claims, for
	// providers whose ID tokens carry only "sub".
	UseUserInfo bool
	// GroupsClaim is the claim holding group memberships (default "groups");
	// it may be a string or an array of strings.
	GroupsClaim string
	// ExtraClaims name the claims (policy.claims) a login and each refresh
	// keep in Tokens.Identity.ExtraClaims, from the ID token and, with
	// UseUserInfo, userinfo; SetExtraClaims changes them on reload.
	ExtraClaims []string
	// HTTPClient is used for every request to the provider (default: a
	// client with a 10s timeout).
	HTTPClient *http.Client
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// Now is the clock for token expiry checks (default time.Now).
	Now func() time.Time
	// SkipIssuerCheck accepts a discovery document whose "issuer" differs
	// from Issuer (Entra ID multi-tenant endpoints, some proxies in front of
	// providers). ID tokens are then checked against the issuer the
	// document names instead. Risk: whoever serves the discovery URL chooses
	// the issuer and keys the proxy trusts, and for multi-tenant providers a
	// token from any tenant may be accepted; use only with an https
	// discovery URL you control or trust, and restrict users by other means.
	SkipIssuerCheck bool
}

// RelyingParty is the proxy's OpenID Connect client towards the upstream
// provider. It is safe for concurrent use. It is created without network
// I/O so configuration can be validated offline; Discover or Run makes it
// ready.
type RelyingParty struct {
	issuer       string
	clientID     string
	clientSecret string
	scopes       []string
	useUserInfo  bool
	groupsClaim  string
	httpClient   *http.Client
	log          *zap.Logger
	now          func() time.Time
	skipIssuer   bool

	// minBackoff and maxBackoff bound Run's retry delay.
	minBackoff time.Duration
	maxBackoff time.Duration

	discovered atomic.Pointer[discovery]
	reach      reachability
	// extra is the live list of Options.ExtraClaims (SetExtraClaims).
	extra atomic.Pointer[[]string]
}

// discovery is everything learned from the discovery document, swapped in
// as one value so readers never see a half-initialised provider.
type discovery struct {
	// issuer is the provider's own spelling of its issuer, which is what
	// its tokens carry in "iss".
	issuer     string
	provider   *gooidc.Provider
	verifier   *gooidc.IDTokenVerifier
	endpoint   oauth2.Endpoint
	endSession string
}

// New validates opts and returns a RelyingParty that is not ready until
// Discover succeeds. It does no network I/O.
func New(opts Options) (*RelyingParty, error) {
	issuer, err := normalizeIssuer(opts.Issuer)
	if err != nil {
		return nil, err
	}
	if opts.ClientID == "" {
		return nil, errors.New("oidc: client ID is required")
	}
	rp := &RelyingParty{
		issuer:       issuer,
		clientID:     opts.ClientID,
		clientSecret: opts.ClientSecret,
		scopes:       normalizeScopes(opts.Scopes),
		useUserInfo:  opts.UseUserInfo,
		groupsClaim:  opts.GroupsClaim,
		httpClient:   opts.HTTPClient,
		log:          opts.Logger,
		now:          opts.Now,
		skipIssuer:   opts.SkipIssuerCheck,
		minBackoff:   500 * time.Millisecond,
		maxBackoff:   30 * time.Second,
	}
	if rp.groupsClaim == "" {
		rp.groupsClaim = "groups"
	}
	rp.SetExtraClaims(opts.ExtraClaims)
	if rp.httpClient == nil {
		rp.httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	if rp.log == nil {
		rp.log = zap.NewNop()
	}
	if rp.now == nil {
		rp.now = time.Now
	}
	return rp, nil
}

// normalizeIssuer accepts an issuer or a discovery URL and returns the
// issuer.
func normalizeIssuer(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("oidc: issuer is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("oidc: issuer %q: %w", raw, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("oidc: issuer %q must be an absolute http(s) URL", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("oidc: issuer %q must not have a query or fragment", raw)
	}
	return strings.TrimSuffix(raw, wellKnownSuffix), nil
}

func normalizeScopes(scopes []string) []string {
	if len(scopes) == 0 {
		scopes = defaultScopes()
	}
	out := []string{gooidc.ScopeOpenID}
	for _, s := range scopes {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// SetExtraClaims replaces the names of the claims logins and refreshes keep
// (Options.ExtraClaims); the server calls it when policy.claims is
// reloaded. Sessions keep what they have until their next login or token
// refresh. Safe for concurrent use.
func (rp *RelyingParty) SetExtraClaims(names []string) {
	names = slices.Clone(names)
	rp.extra.Store(&names)
}

// ExtraClaims returns the names currently kept (see SetExtraClaims).
func (rp *RelyingParty) ExtraClaims() []string { return *rp.extra.Load() }

// Issuer is the configured issuer (without the discovery suffix).
func (rp *RelyingParty) Issuer() string { return rp.issuer }

// TokenIssuer is the issuer as the provider spells it in its tokens: the
// discovered one once discovery succeeded (it may differ from the
// configuration by a trailing slash, or entirely with SkipIssuerCheck),
// the configured one before.
func (rp *RelyingParty) TokenIssuer() string {
	if d := rp.discovered.Load(); d != nil && d.issuer != "" {
		return d.issuer
	}
	return rp.issuer
}

// Ready returns nil once discovery has succeeded and ErrNotReady before, so
// the readiness probe can report it.
func (rp *RelyingParty) Ready() error {
	if rp.discovered.Load() == nil {
		return ErrNotReady
	}
	return nil
}

// clientContext makes go-oidc and x/oauth2 use the configured HTTP client.
func (rp *RelyingParty) clientContext(ctx context.Context) context.Context {
	return gooidc.ClientContext(ctx, rp.httpClient)
}

// Discover fetches the discovery document and makes the relying party
// ready. It may be called again to pick up a changed document.
func (rp *RelyingParty) Discover(ctx context.Context) error {
	cctx := rp.clientContext(ctx)
	// go-oidc's own issuer check is exact; it is done below instead, so
	// that a trailing slash the configuration and the provider spell
	// differently does not fail discovery forever.
	provider, err := gooidc.NewProvider(gooidc.InsecureIssuerURLContext(cctx, rp.issuer), rp.issuer)
	if err != nil {
		return fmt.Errorf("oidc: discovery at %s: %w", rp.issuer, err)
	}
	var meta struct {
		gooidc.ProviderConfig
		EndSession        string   `json:"end_session_endpoint"`
		TokenAuthMethods  []string `json:"token_endpoint_auth_methods_supported"`
		CodeChallengeAlgs []string `json:"code_challenge_methods_supported"`
	}
	if err := provider.Claims(&meta); err != nil {
		return fmt.Errorf("oidc: discovery at %s: %w", rp.issuer, err)
	}
	switch {
	case meta.IssuerURL == rp.issuer:
	case strings.TrimSuffix(meta.IssuerURL, "/") == strings.TrimSuffix(rp.issuer, "/"):
		// Same issuer, other spelling (Auth0's issuers end in "/", and a
		// discovery URL loses it when its suffix is cut). The document
		// was fetched from this very URL, so trusting its spelling trusts
		// nobody new; ID tokens carry that spelling in "iss".
		rp.log.Info("oidc: the provider spells the issuer with a different trailing slash; using its spelling",
			zap.String("configured_issuer", rp.issuer), zap.String("discovered_issuer", meta.IssuerURL))
		provider = meta.ProviderConfig.NewProvider(cctx)
	case rp.skipIssuer:
		// Verify ID tokens against the issuer the document names, not the
		// configured one, so the "iss" check stays meaningful.
		rp.log.Warn("oidc: discovery issuer differs from the configured issuer; trusting the discovered one",
			zap.String("configured_issuer", rp.issuer), zap.String("discovered_issuer", meta.IssuerURL))
		provider = meta.ProviderConfig.NewProvider(cctx)
	default:
		return fmt.Errorf("oidc: discovery at %s: %w", rp.issuer,
			&gooidc.IssuerMismatchError{Provided: rp.issuer, Discovered: meta.IssuerURL})
	}
	if meta.AuthURL == "" || meta.TokenURL == "" || meta.JWKSURL == "" {
		return fmt.Errorf("oidc: discovery at %s: authorization_endpoint, token_endpoint and jwks_uri are required", rp.issuer)
	}
	if rp.useUserInfo && meta.UserInfoURL == "" {
		return fmt.Errorf("oidc: discovery at %s: userinfo is enabled but the provider has no userinfo_endpoint", rp.issuer)
	}
	if len(meta.CodeChallengeAlgs) > 0 && !slices.Contains(meta.CodeChallengeAlgs, "S256") {
		// PKCE is always sent; a provider that ignores it still works, but
		// the operator should know the code is not bound to the verifier.
		rp.log.Warn("oidc: provider does not advertise PKCE S256", zap.Strings("code_challenge_methods_supported", meta.CodeChallengeAlgs))
	}

	algs := slices.DeleteFunc(slices.Clone(meta.Algorithms), func(a string) bool {
		return !allowedSigningAlg(a)
	})
	if len(algs) == 0 {
		algs = []string{gooidc.RS256}
	}
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = rp.authStyle(meta.TokenAuthMethods)
	rp.discovered.Store(&discovery{
		issuer:   meta.IssuerURL,
		provider: provider,
		verifier: provider.VerifierContext(cctx, &gooidc.Config{
			ClientID:             rp.clientID,
			SupportedSigningAlgs: algs,
			Now:                  rp.now,
		}),
		endpoint:   endpoint,
		endSession: meta.EndSession,
	})
	rp.log.Info("oidc: provider discovered", zap.String("issuer", rp.issuer))
	return nil
}

// authStyle picks the client authentication explicitly instead of x/oauth2's
// auto-detection, which retries a failed token request with the other style
// and so would send a rotating refresh token to the provider twice.
func (rp *RelyingParty) authStyle(supported []string) oauth2.AuthStyle {
	switch {
	case rp.clientSecret == "":
		return oauth2.AuthStyleInParams // public client: client_id in the form
	case len(supported) == 0 || slices.Contains(supported, "client_secret_basic"):
		return oauth2.AuthStyleInHeader // the OIDC default
	case slices.Contains(supported, "client_secret_post"):
		return oauth2.AuthStyleInParams
	default:
		return oauth2.AuthStyleInHeader
	}
}

// Run retries Discover with exponential backoff until it succeeds (nil) or
// ctx ends (ctx.Err()). The server runs it at startup so that an IdP that is
// briefly down delays readiness instead of crashing the proxy.
func (rp *RelyingParty) Run(ctx context.Context) error {
	delay := rp.minBackoff
	for attempt := 1; ; attempt++ {
		err := rp.Discover(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rp.log.Warn("oidc: discovery failed, retrying",
			zap.Error(err), zap.Int("attempt", attempt), zap.Duration("retry_in", delay))
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		delay = min(delay*2, rp.maxBackoff)
	}
}

// TokenEndpoint is the provider's token endpoint from discovery, with the
// client authentication the proxy uses there (client_secret_basic unless
// the provider only offers client_secret_post; the form for a public
// client). Token exchange (pkg/tokenexchange) posts to it as the proxy's
// client. ErrNotReady before discovery.
func (rp *RelyingParty) TokenEndpoint() (oauth2.Endpoint, error) {
	d, err := rp.state()
	if err != nil {
		return oauth2.Endpoint{}, err
	}
	return oauth2.Endpoint{TokenURL: d.endpoint.TokenURL, AuthStyle: d.endpoint.AuthStyle}, nil
}

func (rp *RelyingParty) state() (*discovery, error) {
	d := rp.discovered.Load()
	if d == nil {
		return nil, ErrNotReady
	}
	return d, nil
}

func (rp *RelyingParty) oauth2Config(d *discovery, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     rp.clientID,
		ClientSecret: rp.clientSecret,
		Endpoint:     d.endpoint,
		RedirectURL:  redirectURL,
		Scopes:       rp.scopes,
	}
}

// AuthCodeURL returns the provider URL that starts a login: authorization
// code flow bound to state, nonce and a PKCE S256 challenge of verifier
// (from oauth2.GenerateVerifier). All three must be remembered for the
// callback.
func (rp *RelyingParty) AuthCodeURL(state, nonce, verifier, redirectURL string) (string, error) {
	d, err := rp.state()
	if err != nil {
		return "", err
	}
	if state == "" || nonce == "" || verifier == "" || redirectURL == "" {
		return "", errors.New("oidc: state, nonce, PKCE verifier and redirect URL are required")
	}
	return rp.oauth2Config(d, redirectURL).AuthCodeURL(state,
		oauth2.S256ChallengeOption(verifier), gooidc.Nonce(nonce)), nil
}

// Exchange redeems an authorization code (with the PKCE verifier), verifies
// the ID token (signature, issuer, audience, expiry, nonce) and returns the
// tokens with the caller's identity. A code the provider rejects gives an
// error wrapping ErrInvalidGrant; a provider that cannot be reached (or
// answers 5xx), one wrapping ErrUnreachable.
func (rp *RelyingParty) Exchange(ctx context.Context, code, verifier, nonce, redirectURL string) (*Tokens, error) {
	d, err := rp.state()
	if err != nil {
		return nil, err
	}
	if code == "" || verifier == "" || nonce == "" {
		return nil, errors.New("oidc: code, PKCE verifier and nonce are required")
	}
	cctx := rp.clientContext(ctx)
	tok, err := rp.oauth2Config(d, redirectURL).Exchange(cctx, code, oauth2.VerifierOption(verifier))
	if err := rp.observe(err); err != nil {
		return nil, classify("code exchange", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, errors.New("oidc: code exchange: provider returned no id_token")
	}
	id, err := rp.verify(cctx, d, rawID, nonce, tok)
	if err != nil {
		return nil, fmt.Errorf("oidc: code exchange: %w", err)
	}
	return rp.tokens(ctx, tok, rawID, id), nil
}

// Refresh redeems a refresh token with exactly one token request. It
// returns an error wrapping ErrInvalidGrant when the provider rejected the
// token (the session cannot continue); any other error is temporary. When
// the provider returns no new refresh token the old one is kept. When it
// returns no ID token, Tokens.IDToken is empty and Tokens.Identity zero: the
// caller keeps the session's. A new ID token's subject should be compared
// with the session's by the caller (OIDC Core 12.2).
func (rp *RelyingParty) Refresh(ctx context.Context, refreshToken string) (*Tokens, error) {
	d, err := rp.state()
	if err != nil {
		return nil, err
	}
	if refreshToken == "" {
		return nil, errors.New("oidc: refresh: no refresh token")
	}
	cctx := rp.clientContext(ctx)
	tok, err := rp.oauth2Config(d, "").TokenSource(cctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err := rp.observe(err); err != nil {
		return nil, classify("refresh", err)
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return rp.tokens(ctx, tok, "", nil), nil
	}
	id, err := rp.verify(cctx, d, rawID, "", tok)
	if err != nil {
		return nil, fmt.Errorf("oidc: refresh: %w", err)
	}
	return rp.tokens(ctx, tok, rawID, id), nil
}

// classify wraps a token endpoint error, adding ErrInvalidGrant when the
// provider answered invalid_grant.
func classify(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
		return fmt.Errorf("oidc: %s: %w: %w", op, ErrInvalidGrant, err)
	}
	return fmt.Errorf("oidc: %s: %w", op, err)
}

func (rp *RelyingParty) tokens(ctx context.Context, tok *oauth2.Token, rawID string, id *claimSet) *Tokens {
	t := &Tokens{
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		IDToken:      rawID,
		Expiry:       tok.Expiry,
	}
	if tok.ExpiresIn > 0 {
		t.Expiry = rp.now().Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	if id != nil {
		t.Identity = id.identity(rp.groupsClaim)
		if names := rp.ExtraClaims(); len(names) > 0 {
			t.Identity.ExtraClaims = extraClaims(id.raw, names, requestid.Logger(ctx, rp.log))
		}
	}
	return t
}

// EndSessionURL returns the provider's RP-initiated logout URL, or false
// when the provider advertises no end_session_endpoint (or is not ready);
// the caller then only clears its own session.
func (rp *RelyingParty) EndSessionURL(idTokenHint, postLogoutRedirectURL, state string) (string, bool) {
	d := rp.discovered.Load()
	if d == nil || d.endSession == "" {
		return "", false
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		return "", false
	}
	q := u.Query()
	q.Set("client_id", rp.clientID)
	if idTokenHint != "" {
		q.Set("id_token_hint", idTokenHint)
	}
	if postLogoutRedirectURL != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirectURL)
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	return u.String(), true
}
