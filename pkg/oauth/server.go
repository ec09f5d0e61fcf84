// Package oauth is the authorization-server façade: it lets MCP clients that
// speak the MCP authorization spec (RFC 8414, RFC 7591, PKCE S256, RFC 8707)
// obtain access tokens from the proxy itself when the organisation's IdP does
// not offer dynamic registration or audience-bound tokens. The user's login
// is delegated to the proxy's existing browser (cookie) login; this package
// only adds consent and issues its own short-lived tokens bound to the
// resource. Every piece of state lives in a session.Store, so any replica can
// serve any step of a flow.
//
// Decisions (see also DECISION.md for why this is hand-written):
//   - Redirect URIs match exactly as strings, except http loopback URIs
//     (127.0.0.1, [::1], localhost), whose port may differ from the
//     registered one (RFC 8252 §7.3); host, path and query must still match.
//   - Private-use schemes (cursor://, vscode://, com.example.app:/cb) are
//     accepted, as RFC 8252 §7.1 allows and real MCP clients need; schemes
//     that run code in the user agent (javascript:, data:, file:...) are not.
//   - A request without `resource` is bound to the first configured
//     resource, because older clients do not send it; a foreign or repeated
//     `resource` is invalid_target.
//   - Requested scopes are narrowed to the offered ones (RFC 6749 §3.3).
//   - Codes and refresh tokens are stored under their SHA-256 as a grant
//     record plus a separate single-use marker (PutOnce/TakeOnce); the record
//     outlives the marker so a replay is recognised and the family revoked.
//     They are encoded session tickets, and the marker holds the family's
//     state (upstream refresh token, absolute end, last upstream check)
//     sealed with the ticket's key (see upstream.go).
//   - Access tokens carry their family's id (fid), so revoking a family
//     denies every access token it issued with one marker.
//   - Access tokens carry the claims the browser login kept (policy.claims)
//     under one private claim, "ext", never at the top level, so an IdP
//     claim cannot pass for iss, aud, client_id or scope; the validator
//     lifts them into Identity.Claims for rules.
//   - Registration and authorization requests are rate-limited per client
//     address, per replica (in memory; package ratelimit).
//   - Errors at /authorize are shown on a page of the proxy, never
//     redirected: anyone can register a redirect URI (RFC 9700 §4.11.2).
package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/httpjson"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/ratelimit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// Endpoint paths. They are part of the published metadata and of the
// documented sidecar surface, so they are fixed.
const (
	PathAuthorize = "/oauth2/authorize"
	PathConsent   = "/oauth2/consent"
	PathToken     = "/oauth2/token"
	PathRegister  = "/oauth2/register"
	PathRevoke    = "/oauth2/revoke"
	PathJWKS      = "/oauth2/jwks"

	wellKnownAS   = "/.well-known/oauth-authorization-server"
	wellKnownOIDC = "/.well-known/openid-configuration"
)

// Defaults for Options fields left zero.
const (
	DefaultAccessTokenTTL  = 10 * time.Minute
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultCodeTTL         = 60 * time.Second
	DefaultRequestTTL      = 10 * time.Minute
	DefaultClientTTL       = 90 * 24 * time.Hour
	// DefaultUnusedClientTTL: registering is anonymous, so a registration
	// nobody completes a login with is dropped after a day instead of
	// occupying the store for ClientTTL.
	DefaultUnusedClientTTL = 24 * time.Hour
	DefaultConsentTTL      = 90 * 24 * time.Hour
	// DefaultRefreshMaxLifetime is the absolute lifetime of a refresh
	// family: a month of unattended use, then the user authorizes again.
	DefaultRefreshMaxLifetime = 30 * 24 * time.Hour
	// DefaultUpstreamRecheck bounds how long a disabled user, or one who
	// lost a group, keeps getting façade tokens.
	DefaultUpstreamRecheck = time.Hour
	// DefaultSessionTTL matches the browser session's default lifetime.
	DefaultSessionTTL = 12 * time.Hour
	// codeReplayWindow is how long a redeemed code is remembered so that a
	// replay can be detected and the tokens issued from it revoked.
	codeReplayWindow = 10 * time.Minute
)

// Store is what the authorization server keeps in the shared store
// (implemented by session.Store): plain values (clients, pending requests,
// consent, revocation markers) and single-use ones (codes, refresh-token
// markers), in one key space shared by all replicas. It never touches login
// sessions or locks.
type Store interface {
	session.SingleUse
	// Put, Get and AnyExists are those of session.Values.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Get(ctx context.Context, key string) ([]byte, error)
	AnyExists(ctx context.Context, keys ...string) (bool, error)
}

// Options configures New. Store and BaseURL are required.
type Options struct {
	// Store holds clients, pending requests, codes, refresh tokens, consent
	// and the access-token denylist, shared by all replicas.
	Store Store
	// BaseURL returns the proxy's external base URL for a request (for
	// example https://mcp.example.com); it is the issuer. Trusted-proxy
	// handling lives with the caller.
	BaseURL func(r *http.Request) string
	// Resources returns the resource URLs (RFC 8707) tokens may be bound to.
	// The first one is the default when a client omits `resource`. Nil means
	// BaseURL(r) only.
	Resources func(r *http.Request) []string
	// Scopes are the scopes offered (scopes_supported). Requested scopes are
	// narrowed to these; an omitted scope means all of them.
	Scopes []string
	// MetadataPaths are extra paths (for example the MCP path "/mcp") under
	// which discovery is also served in the suffix form
	// <path>/.well-known/openid-configuration, which some SDKs try.
	MetadataPaths []string

	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	CodeTTL         time.Duration
	// RequestTTL bounds the time between /authorize and the consent answer.
	RequestTTL time.Duration
	// ClientTTL is how long a registered client lives without being used.
	ClientTTL time.Duration
	// ConsentTTL is how long a user's consent to a client is remembered.
	ConsentTTL time.Duration
	// RefreshMaxLifetime is the absolute lifetime of a refresh family,
	// fixed at consent and never extended by refreshing.
	RefreshMaxLifetime time.Duration
	// UpstreamRecheck is how often, at most, a refresh renews the user's
	// login at the identity provider.
	UpstreamRecheck time.Duration
	// SessionTTL is the browser session lifetime; a family without an
	// upstream refresh token ends with its session (or SessionTTL after
	// consent when the session's end is unknown).
	SessionTTL time.Duration

	// Logins gives the consent step the browser session's upstream
	// login. Nil: families have no upstream refresh token.
	Logins LoginSource
	// Upstream renews logins at the identity provider. Nil: no rechecks,
	// families end with their browser session.
	Upstream Upstream
	// Authorizer holds the authorization rules applied again on every
	// refresh. Nil allows everyone.
	Authorizer Authorizer
	// RequiredScopes must all be in a grant for it to be refreshed.
	RequiredScopes []string
	// Codec encodes codes and refresh tokens as session tickets and seals
	// the family state with them; it must be the same on every replica
	// (the cookie codec). Nil derives one from SigningKeys.
	Codec *session.Codec

	// SigningKeys are PEM private keys (EC P-256/P-384 or RSA); the first
	// signs, all are published so tokens survive a rotation. Empty means an
	// ephemeral key (tokens do not survive restarts nor validate across
	// replicas; a warning is logged).
	SigningKeys [][]byte

	// RegistrationLimiter limits /oauth2/register per client address.
	// Nil means DefaultRegistrationRate.
	RegistrationLimiter *ratelimit.Limiter
	// RequestLimiter limits /oauth2/authorize, which stores a pending
	// request for an unauthenticated caller, per client address. Share it
	// with the browser login so one address has one budget for both. Nil
	// means DefaultRequestRate.
	RequestLimiter *ratelimit.Limiter
	// ClientAddr returns the caller's address for the limits (normally
	// forwarded.TrustedProxies.ClientAddr). Default: r.RemoteAddr.
	ClientAddr func(r *http.Request) netip.Addr
	// UnusedClientTTL is how long a dynamic registration lives until a
	// token is first issued to it; from then on each token request keeps
	// it for ClientTTL. Default DefaultUnusedClientTTL.
	UnusedClientTTL time.Duration

	// CIMD configures client ID metadata documents.
	CIMD CIMDOptions

	// Revoked is the local copy of revoked tokens and families the bearer
	// check reads instead of the store (see RevokedSet). Nil: the check
	// reads the store on every request (the memory store, where that is
	// local anyway).
	Revoked *RevokedSet

	// Logger receives structured events; default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock for every expiry decision; default time.Now.
	Now func() time.Time
}

// Server is the authorization server. Create it with New.
type Server struct {
	opts  Options
	store Store
	log   *zap.Logger
	now   func() time.Time
	keys  *keySet
	cimd  *cimdFetcher
	codec *session.Codec
}

// New validates opts, loads the signing keys and returns a Server. It does no
// network I/O.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("oauth: Options.Store is required")
	}
	if opts.BaseURL == nil {
		return nil, errors.New("oauth: Options.BaseURL is required")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Resources == nil {
		base := opts.BaseURL
		opts.Resources = func(r *http.Request) []string { return []string{base(r)} }
	}
	if opts.ClientAddr == nil {
		opts.ClientAddr = remoteAddr
	}
	var err error
	if opts.RegistrationLimiter == nil {
		if opts.RegistrationLimiter, err = ratelimit.New(DefaultRegistrationRate, ratelimit.Options{Now: opts.Now}); err != nil {
			return nil, fmt.Errorf("oauth: registration limit: %w", err)
		}
	}
	if opts.RequestLimiter == nil {
		if opts.RequestLimiter, err = ratelimit.New(DefaultRequestRate, ratelimit.Options{Now: opts.Now}); err != nil {
			return nil, fmt.Errorf("oauth: authorization request limit: %w", err)
		}
	}
	setDefault(&opts.AccessTokenTTL, DefaultAccessTokenTTL)
	setDefault(&opts.RefreshTokenTTL, DefaultRefreshTokenTTL)
	setDefault(&opts.CodeTTL, DefaultCodeTTL)
	setDefault(&opts.RequestTTL, DefaultRequestTTL)
	setDefault(&opts.ClientTTL, DefaultClientTTL)
	setDefault(&opts.UnusedClientTTL, DefaultUnusedClientTTL)
	opts.UnusedClientTTL = min(opts.UnusedClientTTL, opts.ClientTTL)
	setDefault(&opts.ConsentTTL, DefaultConsentTTL)
	setDefault(&opts.RefreshMaxLifetime, DefaultRefreshMaxLifetime)
	setDefault(&opts.UpstreamRecheck, DefaultUpstreamRecheck)
	setDefault(&opts.SessionTTL, DefaultSessionTTL)
	if opts.Codec == nil {
		c, err := defaultCodec(opts.SigningKeys)
		if err != nil {
			return nil, err
		}
		opts.Codec = c
	}
	keys, err := loadKeys(opts.SigningKeys)
	if err != nil {
		return nil, err
	}
	if len(opts.SigningKeys) == 0 {
		opts.Logger.Warn("oauth: no signing keys configured; using an ephemeral key, so access tokens will not survive a restart and will not validate across replicas",
			zap.String("kid", keys.active.kid))
	}
	cimd, err := newCIMDFetcher(opts.CIMD, opts.Store, opts.Now)
	if err != nil {
		return nil, err
	}
	return &Server{
		opts:  opts,
		store: opts.Store,
		log:   opts.Logger,
		now:   opts.Now,
		keys:  keys,
		cimd:  cimd,
		codec: opts.Codec,
	}, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Default limits for Options left nil.
var (
	// DefaultRegistrationRate allows a client address a burst of 10
	// registrations, then one every 6 seconds: generous for real clients
	// (one registration per install), tight for someone filling the store.
	DefaultRegistrationRate = ratelimit.Rate{PerMinute: 10, Burst: 10}
	// DefaultRequestRate allows a client address 60 authorization requests
	// a minute: each is stored for RequestTTL, so one address can hold at
	// most Burst + 60 x 10 of them (a few KiB each) at any time.
	DefaultRequestRate = ratelimit.Rate{PerMinute: 60, Burst: 60}
)

// remoteAddr is the direct peer's address (the zero Addr when RemoteAddr
// is not an IP address).
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, _ := netip.ParseAddr(r.RemoteAddr)
		return a
	}
	return ap.Addr()
}

// limited answers 429 with Retry-After when limiter has no token left for
// r's client address, and reports whether it did.
func (s *Server) limited(w http.ResponseWriter, r *http.Request, limiter *ratelimit.Limiter, what string) bool {
	ok, wait := limiter.Allow(s.opts.ClientAddr(r))
	if ok {
		return false
	}
	// Debug: every refused request of a flood would otherwise add a line.
	s.logFor(r.Context()).Debug("oauth: rate limited", zap.String("endpoint", r.URL.Path), zap.Stringer("client_addr", s.opts.ClientAddr(r)))
	ratelimit.SetRetryAfter(w.Header(), wait)
	errorPage(w, r, http.StatusTooManyRequests, errSlowDown, "too many "+what+" from your address; retry later")
	return true
}

// Register mounts every endpoint on mux. consentWrapper wraps the consent
// handler with the browser (cookie) login so the handler finds the user in
// identity.FromContext; it must not be nil.
func (s *Server) Register(mux *http.ServeMux, consentWrapper func(http.Handler) http.Handler) {
	meta := cors(http.HandlerFunc(s.handleMetadata))
	mux.Handle(wellKnownAS, meta)
	mux.Handle(wellKnownAS+"/{path...}", meta)
	mux.Handle(wellKnownOIDC, meta)
	mux.Handle(wellKnownOIDC+"/{path...}", meta)
	for _, p := range s.opts.MetadataPaths {
		p = "/" + strings.Trim(p, "/")
		if p == "/" {
			continue
		}
		mux.Handle(p+wellKnownOIDC, meta)
		mux.Handle(p+wellKnownAS, meta)
	}
	mux.Handle(PathJWKS, cors(http.HandlerFunc(s.handleJWKS)))
	mux.Handle(PathRegister, cors(http.HandlerFunc(s.handleRegister)))
	mux.Handle(PathToken, cors(http.HandlerFunc(s.handleToken)))
	mux.Handle(PathRevoke, cors(http.HandlerFunc(s.handleRevoke)))
	mux.HandleFunc(PathAuthorize, s.handleAuthorize)
	mux.Handle(PathConsent, consentWrapper(http.HandlerFunc(s.handleConsent)))
}

// cors answers browser-based MCP clients (for example MCP Inspector) on the
// endpoints they call cross-origin. None of them uses cookies, so a wildcard
// origin without credentials is safe.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) issuer(r *http.Request) string {
	return strings.TrimRight(s.opts.BaseURL(r), "/")
}

// Metadata is the RFC 8414 authorization server metadata document (also
// served as OpenID discovery, which MCP SDKs fall back to).
type Metadata struct {
	Issuer                             string   `json:"issuer"`
	AuthorizationEndpoint              string   `json:"authorization_endpoint"`
	TokenEndpoint                      string   `json:"token_endpoint"`
	RegistrationEndpoint               string   `json:"registration_endpoint"`
	RevocationEndpoint                 string   `json:"revocation_endpoint"`
	JWKSURI                            string   `json:"jwks_uri"`
	ScopesSupported                    []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported             []string `json:"response_types_supported"`
	ResponseModesSupported             []string `json:"response_modes_supported"`
	GrantTypesSupported                []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported  []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods      []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported      []string `json:"code_challenge_methods_supported"`
	ClientIDMetadataDocumentSupported  bool     `json:"client_id_metadata_document_supported"`
	AuthorizationResponseIssSupported  bool     `json:"authorization_response_iss_parameter_supported"`
	SubjectTypesSupported              []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported   []string `json:"id_token_signing_alg_values_supported"`
	ResourceIndicatorsSupported        bool     `json:"resource_indicators_supported"`
	ProtectedResources                 []string `json:"protected_resources,omitempty"`
	AccessTokenSigningAlgValuesSupport []string `json:"access_token_signing_alg_values_supported,omitempty"`
}

// Metadata returns the document served for r.
func (s *Server) Metadata(r *http.Request) Metadata {
	iss := s.issuer(r)
	authMethods := []string{authNone, authBasic, authPost}
	return Metadata{
		Issuer:                             iss,
		AuthorizationEndpoint:              iss + PathAuthorize,
		TokenEndpoint:                      iss + PathToken,
		RegistrationEndpoint:               iss + PathRegister,
		RevocationEndpoint:                 iss + PathRevoke,
		JWKSURI:                            iss + PathJWKS,
		ScopesSupported:                    s.opts.Scopes,
		ResponseTypesSupported:             []string{"code"},
		ResponseModesSupported:             []string{"query"},
		GrantTypesSupported:                supportedGrants(),
		TokenEndpointAuthMethodsSupported:  authMethods,
		RevocationEndpointAuthMethods:      authMethods,
		CodeChallengeMethodsSupported:      []string{"S256"},
		ClientIDMetadataDocumentSupported:  !s.opts.CIMD.Disabled,
		AuthorizationResponseIssSupported:  true,
		SubjectTypesSupported:              []string{"public"},
		IDTokenSigningAlgValuesSupported:   []string{s.keys.active.alg},
		ResourceIndicatorsSupported:        true,
		ProtectedResources:                 s.opts.Resources(r),
		AccessTokenSigningAlgValuesSupport: []string{s.keys.active.alg},
	}
}

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		writeOAuthError(w, http.StatusMethodNotAllowed, errInvalidRequest, "method not allowed")
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	// Without an external URL every URL in the document comes from the
	// request's Host and (from a trusted proxy) X-Forwarded-Host/-Proto: a
	// shared cache must key on them, or one host's document (or a spoofed
	// one) is served for every host. With an external URL the values never
	// change, so the Vary costs nothing but a few cache entries.
	w.Header().Set("Vary", "Host, X-Forwarded-Host, X-Forwarded-Proto")
	httpjson.Write(w, http.StatusOK, s.Metadata(r))
}

// logFor is the logger for lines about the request whose context is ctx
// (see requestid.Logger).
func (s *Server) logFor(ctx context.Context) *zap.Logger {
	return requestid.Logger(ctx, s.log)
}

// storeErr turns a store failure into a 503 for the caller and a log line;
// it never leaks the error text. The body is an OAuth error, as clients of
// these endpoints expect; the retry hint is every store outage's.
func (s *Server) storeErr(w http.ResponseWriter, r *http.Request, op string, err error) {
	s.logFor(r.Context()).Error("oauth: session store failure", zap.String("op", op), zap.Error(err))
	w.Header().Set("Retry-After", strconv.Itoa(apierror.StoreDownRetryAfter))
	writeOAuthError(w, http.StatusServiceUnavailable, errTemporarilyUnavailable, "state store temporarily unavailable")
}
