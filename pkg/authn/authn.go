// Package authn decides who a browser caller is: it runs the OpenID Connect
// login for browsers (start, callback), keeps the resulting cookie session
// alive (refresh across replicas), ends it (logout) and reports it (session
// info). The cookie only carries an opaque ticket; everything else lives
// encrypted in the shared session store, so every replica accepts every
// session and a Redis outage never logs anybody out.
package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/cookiename"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/ratelimit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// Paths served by Register. The callback path is configurable because it is
// registered at the identity provider; the others are fixed names users and
// web UIs link to.
const (
	StartPath         = "/oauth2/start"
	LogoutPath        = "/oauth2/logout"
	SessionPath       = "/oauth2/session"
	LegacySessionPath = "/api/v1/session"
	// DefaultCallbackPath is the redirect URI path registered at the IdP.
	DefaultCallbackPath = "/oauth2/callback"
)

// Default cookie names, owned by package cookiename (see there for why the
// secure one has the __Host- prefix).
const (
	DefaultSecureCookieName   = cookiename.SecureDefault
	DefaultInsecureCookieName = cookiename.InsecureDefault
)

// Defaults for Options.
const (
	DefaultSessionTTL     = 12 * time.Hour
	DefaultIdleTimeout    = time.Hour
	DefaultRefreshBefore  = time.Minute
	DefaultStateTTL       = 10 * time.Minute
	DefaultRefreshLockTTL = 15 * time.Second
	DefaultRefreshWait    = 10 * time.Second
	// DefaultMaxCookieSize bounds the session cookie value we try to decode.
	// A ticket is well under 200 bytes; anything bigger is garbage or an
	// attack and is rejected before any cryptographic work.
	DefaultMaxCookieSize = 512
)

// Method is the identity.Identity Method value for cookie sessions.
const Method = "cookie"

// RelyingParty is the upstream OIDC client the login flow drives
// (implemented by *oidc.RelyingParty).
type RelyingParty interface {
	// AuthCodeURL is the provider authorization URL for a new login.
	AuthCodeURL(state, nonce, verifier, redirectURL string) (string, error)
	// Exchange redeems the authorization code and verifies the ID token
	// against nonce.
	Exchange(ctx context.Context, code, verifier, nonce, redirectURL string) (*oidc.Tokens, error)
	// Refresh uses a refresh token; errors.Is(err, oidc.ErrInvalidGrant)
	// means the session cannot continue.
	Refresh(ctx context.Context, refreshToken string) (*oidc.Tokens, error)
	// EndSessionURL is the RP-initiated logout URL, if the provider has one.
	EndSessionURL(idTokenHint, postLogoutRedirectURL, state string) (string, bool)
	// Reachable returns an error wrapping oidc.ErrUnreachable when the
	// provider cannot be reached now, so no login is started towards it.
	Reachable(ctx context.Context) error
}

// Observer receives outcomes for metrics. Outcomes are short, fixed label
// values (see the Outcome* constants), never user data.
type Observer interface {
	// AuthOutcome is called once per authenticated-route request.
	AuthOutcome(method, outcome string)
	// LoginOutcome is called once per callback.
	LoginOutcome(outcome string)
	// RefreshOutcome is called once per attempted token refresh.
	RefreshOutcome(outcome string)
}

// Outcome label values passed to Observer.
const (
	OutcomeOK           = "ok"
	OutcomeNoSession    = "no_session"
	OutcomeInvalid      = "invalid"
	OutcomeExpired      = "expired"
	OutcomeStoreError   = "store_error"
	OutcomeRefreshError = "refresh_error"
	OutcomeBadState     = "bad_state"
	OutcomeProviderErr  = "provider_error"
	OutcomeExchangeErr  = "exchange_error"
	OutcomeRefreshed    = "refreshed"
	OutcomeShared       = "shared" // another request or replica refreshed
	OutcomeInvalidGrant = "invalid_grant"
	OutcomeLimit        = "limit_reached"
)

// Options are the dependencies and settings of an Authenticator.
type Options struct {
	// Sessions holds the login sessions. Required.
	Sessions session.Sessions
	// States holds each started login's state until its callback consumes
	// it, on whichever replica the callback lands. Required.
	States session.SingleUse
	// Locks serialises token refreshes of one session across replicas.
	// Required.
	Locks session.Locker
	// Codec turns tickets into cookie values and encrypts payloads. Required.
	Codec *session.Codec
	// RelyingParty talks to the identity provider. Required.
	RelyingParty RelyingParty
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// Observer may be nil.
	Observer Observer
	// Now is the clock; defaults to time.Now. Injected so tests can move
	// a session to the edge of its token's expiry.
	Now func() time.Time

	// CookieName defaults to cookiename.Default(InsecureCookies); it must
	// pass cookiename.Check.
	CookieName string
	// InsecureCookies drops the Secure attribute so the session works over
	// plain HTTP (localhost development only). Off by default: the zero
	// value is the safe one.
	InsecureCookies bool
	// SessionTTL is the absolute session lifetime (default 12h).
	SessionTTL time.Duration
	// IdleTimeout ends a session unused for this long (default 1h).
	IdleTimeout time.Duration
	// Limit caps concurrent sessions per user.
	Limit session.Limit
	// RefreshBefore refreshes the access token when it expires within this
	// margin (default 1m).
	RefreshBefore time.Duration
	// StateTTL bounds how long a started login may take (default 10m).
	StateTTL time.Duration
	// RefreshLockTTL is the lifetime of the cross-replica refresh lock; it
	// is extended while a refresh is in flight (default 15s).
	RefreshLockTTL time.Duration
	// RefreshWait bounds how long a request waits for a refresh another
	// request or replica is doing (default 10s).
	RefreshWait time.Duration
	// MaxCookieSize bounds the accepted cookie value (default 512 bytes).
	MaxCookieSize int
	// CallbackPath defaults to DefaultCallbackPath.
	CallbackPath string
	// RedirectURL returns the absolute external callback URL for r (the
	// redirect_uri registered at the provider). Required.
	RedirectURL func(r *http.Request) string
	// BaseURL returns the proxy's external base URL for r; its origin is the
	// only one a logout POST may come from. Default: the origin of
	// RedirectURL.
	BaseURL func(r *http.Request) string
	// PostLogoutRedirectURL is sent to the provider's end_session_endpoint
	// and used directly when the provider has none (default "/").
	PostLogoutRedirectURL string
	// Unauthenticated, when set, answers non-navigation requests without a
	// session (for example to add WWW-Authenticate). Default: 401 JSON.
	Unauthenticated http.Handler
	// Limiter limits, per client address, the logins started (each stores
	// a login state for someone who has not logged in yet). Share it with
	// the OAuth authorization endpoint so an address has one budget. Nil
	// means DefaultLoginRate.
	Limiter *ratelimit.Limiter
	// ClientAddr returns the caller's address for Limiter (normally
	// forwarded.TrustedProxies.ClientAddr). Default: r.RemoteAddr.
	ClientAddr func(r *http.Request) netip.Addr
}

// DefaultLoginRate allows a client address 60 login starts a minute (a
// burst of 60): a login state lives StateTTL, so one address holds at most
// 60 + 60 x 10 of them. Offices behind one NAT address may need more.
var DefaultLoginRate = ratelimit.Rate{PerMinute: 60, Burst: 60}

// Authenticator serves the browser login endpoints and authenticates
// requests carrying a session cookie. Safe for concurrent use.
type Authenticator struct {
	sessions session.Sessions
	states   session.SingleUse
	locks    session.Locker
	codec    *session.Codec
	opened   *opened
	rp       RelyingParty
	log      *zap.Logger
	obs      Observer
	now      func() time.Time
	opts     Options
	stateCk  string
	unauthed http.Handler
}

// New validates opts, fills defaults and returns an Authenticator.
func New(opts Options) (*Authenticator, error) {
	var errs []error
	if opts.Sessions == nil {
		errs = append(errs, errors.New("authn: Sessions is required"))
	}
	if opts.States == nil {
		errs = append(errs, errors.New("authn: States is required"))
	}
	if opts.Locks == nil {
		errs = append(errs, errors.New("authn: Locks is required"))
	}
	if opts.Codec == nil {
		errs = append(errs, errors.New("authn: Codec is required"))
	}
	if opts.RelyingParty == nil {
		errs = append(errs, errors.New("authn: RelyingParty is required"))
	}
	if opts.RedirectURL == nil {
		errs = append(errs, errors.New("authn: RedirectURL is required"))
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CookieName == "" {
		opts.CookieName = cookiename.Default(opts.InsecureCookies)
	}
	if err := cookiename.Check(opts.CookieName, opts.InsecureCookies); err != nil {
		errs = append(errs, fmt.Errorf("authn: CookieName: %w", err))
	}
	setDefault(&opts.SessionTTL, DefaultSessionTTL)
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.RefreshBefore, DefaultRefreshBefore)
	setDefault(&opts.StateTTL, DefaultStateTTL)
	setDefault(&opts.RefreshLockTTL, DefaultRefreshLockTTL)
	setDefault(&opts.RefreshWait, DefaultRefreshWait)
	if opts.MaxCookieSize <= 0 {
		opts.MaxCookieSize = DefaultMaxCookieSize
	}
	if opts.ClientAddr == nil {
		opts.ClientAddr = remoteAddr
	}
	if opts.Limiter == nil {
		l, err := ratelimit.New(DefaultLoginRate, ratelimit.Options{Now: opts.Now})
		if err != nil {
			errs = append(errs, fmt.Errorf("authn: login limit: %w", err))
		}
		opts.Limiter = l
	}
	if opts.CallbackPath == "" {
		opts.CallbackPath = DefaultCallbackPath
	}
	if !strings.HasPrefix(opts.CallbackPath, "/") {
		errs = append(errs, fmt.Errorf("authn: CallbackPath %q must start with /", opts.CallbackPath))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	a := &Authenticator{
		sessions: opts.Sessions,
		states:   opts.States,
		locks:    opts.Locks,
		codec:    opts.Codec,
		opened:   newOpened(),
		rp:       opts.RelyingParty,
		log:      opts.Logger,
		obs:      opts.Observer,
		now:      opts.Now,
		opts:     opts,
		stateCk:  opts.CookieName + "-state",
		unauthed: opts.Unauthenticated,
	}
	if a.unauthed == nil {
		a.unauthed = http.HandlerFunc(defaultUnauthenticated)
	}
	return a, nil
}

// CookieName is the session cookie's name, so the server can strip it from
// requests forwarded upstream.
func (a *Authenticator) CookieName() string { return a.opts.CookieName }

// CookieNames lists every cookie the authenticator sets (session and login
// state), so the proxy can strip all of them before forwarding: none of them
// is the upstream's business.
func (a *Authenticator) CookieNames() []string { return []string{a.opts.CookieName, a.stateCk} }

// Register adds the login, callback, logout and session-info endpoints to mux.
func (a *Authenticator) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+StartPath, a.handleStart)
	mux.HandleFunc("GET "+a.opts.CallbackPath, a.handleCallback)
	mux.HandleFunc("GET "+LogoutPath, a.handleLogout)
	mux.HandleFunc("POST "+LogoutPath, a.handleLogout)
	mux.HandleFunc("GET "+SessionPath, a.handleSessionInfo)
	mux.HandleFunc("GET "+LegacySessionPath, a.handleSessionInfo)
}

// Handler returns a handler serving only the endpoints of Register.
func (a *Authenticator) Handler() http.Handler {
	mux := http.NewServeMux()
	a.Register(mux)
	return mux
}

// logFor is the logger for lines about the request whose context is ctx
// (see requestid.Logger).
func (a *Authenticator) logFor(ctx context.Context) *zap.Logger {
	return requestid.Logger(ctx, a.log)
}

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

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

type nopObserver struct{}

func (nopObserver) AuthOutcome(string, string) {}
func (nopObserver) LoginOutcome(string)        {}
func (nopObserver) RefreshOutcome(string)      {}

var _ Observer = nopObserver{}
