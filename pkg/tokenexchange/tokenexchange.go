// Package tokenexchange obtains, per user, a token for a downstream API by
// OAuth 2.0 Token Exchange (RFC 8693) at the identity provider's token
// endpoint, and hands it to the MCP server in a configured header.
//
// The MCP authorization spec forbids passing the client's token through to
// the MCP server (token passthrough): a token minted for the proxy must not
// be replayable against other APIs. Instead the proxy presents the caller's
// upstream identity (the subject token: a cookie session's provider access
// token, or an external-mode bearer token, which the provider issued) and
// asks the provider for a token whose audience is the downstream API. The
// client's own Authorization header never reaches the MCP server.
//
// Exchanged tokens are cached per user, audience and scopes in the session
// store (so every replica shares them), sealed with the session codec and
// under a hashed key, until ExpiryMargin before they expire. Concurrent
// requests of one user cause one exchange (single flight), and after a
// failure the same user's requests fail fast for FailureBackoff instead of
// asking the provider again (no retry storm).
package tokenexchange

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// RFC 8693 identifiers.
const (
	// GrantType is the token exchange grant (RFC 8693 §2.1).
	GrantType = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeAccessToken is an OAuth access token (RFC 8693 §3).
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	// TokenTypeIDToken is an OpenID Connect ID token.
	TokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"
	// TokenTypeJWT is any JWT; some providers name JWT access tokens so.
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
)

// Errors, for errors.Is. Every error Token returns wraps one of them.
var (
	// ErrNoSubjectToken: the caller has no identity-provider token the
	// proxy could exchange (no exchange was attempted).
	ErrNoSubjectToken = errors.New("tokenexchange: the caller has no identity provider token to exchange")
	// ErrFacadeCaller wraps ErrNoSubjectToken for callers with a token of
	// the proxy's own OAuth façade: it is the proxy's token, not the
	// provider's, and the provider's login behind it is sealed with a key
	// only the client's refresh token holds.
	ErrFacadeCaller = fmt.Errorf("%w: tokens of the proxy's OAuth façade cannot be exchanged", ErrNoSubjectToken)
	// ErrExchangeFailed: the provider refused the exchange, could not be
	// reached, or answered something unusable. The same user's requests get
	// the same error for FailureBackoff without asking the provider again.
	ErrExchangeFailed = errors.New("tokenexchange: token exchange at the identity provider failed")
	// ErrCacheUnavailable: the session store holding the cache could not be
	// read; like every store outage this is temporary.
	ErrCacheUnavailable = errors.New("tokenexchange: token cache (session store) unavailable")
)

// Subject is the caller's upstream identity to exchange.
type Subject struct {
	// Issuer and Subject identify the user for the cache key; they are
	// hashed, never stored or logged as they are.
	Issuer  string
	Subject string
	// Token is the subject token sent to the provider.
	Token string
	// TokenType is its RFC 8693 type (default TokenTypeAccessToken).
	TokenType string
}

// Cache is where exchanged tokens are shared between replicas: the Values
// part of the session store (session.Values).
type Cache interface {
	// Get returns an error wrapping session.ErrNotFound for a missing or
	// expired key; any other error is an outage.
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Sealer encrypts cached tokens so a dump of the store yields none
// (implemented by *session.Codec, whose key every replica derives from the
// cookie secret).
type Sealer interface {
	SealValue(plaintext, ad []byte) ([]byte, error)
	OpenValue(ciphertext, ad []byte) ([]byte, error)
}

// Options configure an Exchanger.
type Options struct {
	// Endpoint returns the provider's token endpoint and the client
	// authentication style (oidc.RelyingParty.TokenEndpoint, from
	// discovery); it is asked before every exchange, so a rediscovered
	// endpoint is used at once. Required unless TokenURL is set.
	Endpoint func() (oauth2.Endpoint, error)
	// TokenURL, when set, replaces the endpoint's URL (the
	// token_exchange.endpoint setting); the authentication style still
	// comes from Endpoint when it is set, else client_secret_basic.
	TokenURL string
	// ClientID and ClientSecret authenticate the proxy's OIDC client, which
	// the provider must allow to use the token exchange grant. An empty
	// secret sends client_id in the form (a public client).
	ClientID     string
	ClientSecret string
	// Audience is the downstream API the token is for. Required.
	Audience string
	// Scopes are requested for the exchanged token.
	Scopes []string
	// Header carries the token to the MCP server: "Bearer <token>" when it
	// is Authorization, the bare token otherwise. Required.
	Header string
	// Subject finds the request's subject token (see CallerSubject).
	// Required.
	Subject SubjectSource
	// ExpiryMargin: a cached token is renewed this long before it expires.
	ExpiryMargin time.Duration
	// FailureBackoff: after a failed exchange the same user's requests fail
	// with the same error for this long without asking the provider.
	FailureBackoff time.Duration
	// Timeout bounds one exchange (default 10s). The exchange runs detached
	// from the request that started it, because other requests wait for it.
	Timeout time.Duration
	// Cache and Sealer are required.
	Cache  Cache
	Sealer Sealer
	// HTTPClient defaults to a client with Timeout.
	HTTPClient *http.Client
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Exchanger exchanges subject tokens for downstream tokens, caching the
// results. Safe for concurrent use.
type Exchanger struct {
	opts      Options
	header    string
	scopes    string
	keyPrefix []byte
	log       *zap.Logger
	flights   flights
	failures  failures
}

// defaultTimeout bounds an exchange when Options.Timeout is zero.
const defaultTimeout = 10 * time.Second

// keyNamespace prefixes cache keys in the store's key space.
const keyNamespace = "tokenexchange:"

// New validates opts and returns an Exchanger. It does no network I/O.
func New(opts Options) (*Exchanger, error) {
	var missing []string
	for _, req := range []struct {
		name string
		ok   bool
	}{
		{"Endpoint or TokenURL", opts.Endpoint != nil || opts.TokenURL != ""},
		{"ClientID", opts.ClientID != ""},
		{"Audience", opts.Audience != ""},
		{"Header", opts.Header != ""},
		{"Subject", opts.Subject != nil},
		{"Cache", opts.Cache != nil},
		{"Sealer", opts.Sealer != nil},
	} {
		if !req.ok {
			missing = append(missing, req.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("tokenexchange: missing %s", strings.Join(missing, ", "))
	}
	if opts.ExpiryMargin < 0 || opts.FailureBackoff < 0 || opts.Timeout < 0 {
		return nil, errors.New("tokenexchange: ExpiryMargin, FailureBackoff and Timeout must not be negative")
	}
	if opts.Timeout == 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: opts.Timeout}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Scopes = slices.Clone(opts.Scopes)
	// The key covers what makes two exchanged tokens different: client,
	// audience and scopes (sorted: the order asked in does not matter).
	sorted := slices.Clone(opts.Scopes)
	slices.Sort(sorted)
	prefix, err := json.Marshal([]any{opts.ClientID, opts.Audience, sorted})
	if err != nil {
		return nil, fmt.Errorf("tokenexchange: cache key: %w", err)
	}
	return &Exchanger{
		opts:      opts,
		header:    http.CanonicalHeaderKey(opts.Header),
		scopes:    strings.Join(opts.Scopes, " "),
		keyPrefix: prefix,
		log:       opts.Logger,
		flights:   flights{calls: map[string]*call{}},
		failures:  failures{m: map[string]failure{}},
	}, nil
}

// Token returns a token for the configured audience on behalf of subject:
// from the cache while it is valid for more than ExpiryMargin, else from
// one exchange at the provider shared by every concurrent request of the
// same user. Errors wrap ErrNoSubjectToken, ErrExchangeFailed,
// ErrCacheUnavailable, or the context's error when ctx ends first.
func (e *Exchanger) Token(ctx context.Context, subject Subject) (string, error) {
	if subject.Token == "" || subject.Subject == "" {
		return "", ErrNoSubjectToken
	}
	if subject.TokenType == "" {
		subject.TokenType = TokenTypeAccessToken
	}
	key := e.cacheKey(subject)
	if err := e.failures.get(key, e.opts.Now()); err != nil {
		return "", err
	}
	tok, err := e.cached(ctx, key)
	if err != nil || tok != "" {
		return tok, err
	}
	detached := context.WithoutCancel(ctx)
	return e.flights.do(ctx, key, func() (string, error) {
		ctx, cancel := context.WithTimeout(detached, e.opts.Timeout)
		defer cancel()
		return e.renew(ctx, key, subject)
	})
}

// renew runs once per key at a time (single flight). A request that missed
// the cache just before the previous flight stored its result, or failed,
// finds that result here instead of exchanging again.
func (e *Exchanger) renew(ctx context.Context, key string, subject Subject) (string, error) {
	if err := e.failures.get(key, e.opts.Now()); err != nil {
		return "", err
	}
	if tok, err := e.cached(ctx, key); err != nil || tok != "" {
		return tok, err
	}
	log := requestid.Logger(ctx, e.log).With(zap.String("audience", e.opts.Audience), zap.String("user_key", shortKey(key)))
	res, err := e.exchange(ctx, subject)
	if err != nil {
		log.Warn("token exchange failed; the user's requests fail fast for the failure backoff",
			append(errorFields(err, subject.Token), zap.Duration("backoff", e.opts.FailureBackoff))...)
		if e.opts.FailureBackoff > 0 {
			e.failures.put(key, err, e.opts.Now(), e.opts.FailureBackoff)
		}
		return "", err
	}
	log.Debug("token exchanged", zap.Time("expiry", res.expiry))
	e.store(ctx, log, key, res)
	return res.token, nil
}

// cacheKey hashes the user, client, audience and scopes: no subject appears
// in the store's key names, and users, audiences and scopes never collide.
func (e *Exchanger) cacheKey(s Subject) string {
	user, _ := json.Marshal([]string{s.Issuer, s.Subject})
	h := sha256.New()
	h.Write(user)
	h.Write(e.keyPrefix)
	return keyNamespace + hex.EncodeToString(h.Sum(nil))
}

// shortKey is a log-safe prefix of a cache key's hash, enough to correlate
// lines about one user.
func shortKey(key string) string {
	k := strings.TrimPrefix(key, keyNamespace)
	if len(k) > 12 {
		return k[:12]
	}
	return k
}

// entry is a cached token as sealed into the store.
type entry struct {
	Token  string    `json:"t"`
	Expiry time.Time `json:"e"`
}

// cached returns the cached token for key if it is valid for more than
// ExpiryMargin, or "" when there is none.
func (e *Exchanger) cached(ctx context.Context, key string) (string, error) {
	sealed, err := e.opts.Cache.Get(ctx, key)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrCacheUnavailable, err)
	}
	plain, err := e.opts.Sealer.OpenValue(sealed, []byte(key))
	if err != nil {
		// Sealed under another cookie secret (a rotation) or tampered
		// with: exchange again and overwrite it.
		requestid.Logger(ctx, e.log).Warn("cached exchanged token does not open; exchanging again", zap.String("user_key", shortKey(key)), zap.Error(err))
		return "", nil
	}
	var ent entry
	if err := json.Unmarshal(plain, &ent); err != nil || ent.Token == "" {
		return "", nil
	}
	if !e.usable(ent.Expiry) {
		return "", nil
	}
	return ent.Token, nil
}

// usable reports whether a token expiring at expiry may still be handed
// out: more than ExpiryMargin before it expires.
func (e *Exchanger) usable(expiry time.Time) bool {
	return e.opts.Now().Before(expiry.Add(-e.opts.ExpiryMargin))
}

// store caches res until ExpiryMargin before it expires. A token without
// expires_in is not cached (its lifetime is unknown), and a failure to
// store only costs the next request an exchange.
func (e *Exchanger) store(ctx context.Context, log *zap.Logger, key string, res *result) {
	if res.expiry.IsZero() {
		log.Debug("exchanged token has no expires_in; not cached")
		return
	}
	ttl := res.expiry.Add(-e.opts.ExpiryMargin).Sub(e.opts.Now())
	if ttl <= 0 {
		log.Debug("exchanged token expires within the expiry margin; not cached")
		return
	}
	plain, err := json.Marshal(entry{Token: res.token, Expiry: res.expiry})
	if err != nil {
		log.Error("encode exchanged token for the cache", zap.Error(err))
		return
	}
	sealed, err := e.opts.Sealer.SealValue(plain, []byte(key))
	if err != nil {
		log.Error("seal exchanged token for the cache", zap.Error(err))
		return
	}
	if err := e.opts.Cache.Put(ctx, key, sealed, ttl); err != nil {
		log.Warn("cache exchanged token", zap.Error(err))
	}
}
