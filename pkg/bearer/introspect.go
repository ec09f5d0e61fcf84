package bearer

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults for IntrospectionOptions.
const (
	DefaultIntrospectionCacheTTL = 30 * time.Second
	// MaxNegativeCacheTTL caps how long an inactive answer is remembered: a
	// token that just became valid must not stay rejected for long.
	MaxNegativeCacheTTL = 5 * time.Second
	// DefaultIntrospectionCacheSize bounds the cache's memory.
	DefaultIntrospectionCacheSize = 10000
)

// IntrospectionOptions configure an Introspector.
type IntrospectionOptions struct {
	// Endpoint is the RFC 7662 introspection URL. Required.
	Endpoint string
	// ClientID and ClientSecret authenticate the proxy at the endpoint
	// (client_secret_basic). ClientID is required.
	ClientID     string
	ClientSecret string
	// Audiences: the response's aud must contain one of these. A response
	// without aud is refused unless AllowMissingAudience is set, because
	// the MCP spec requires tokens issued for this resource: any other token
	// the IdP issued (for another API) would otherwise open it.
	Audiences []string
	// AudienceFromRequest takes the expected audience from the Expectation
	// passed to Validate instead of Audiences, so one introspector
	// (one cache) serves every host the operator expects. A request without
	// one is refused.
	AudienceFromRequest bool
	// AllowMissingAudience accepts active tokens whose introspection
	// response has no aud, for IdPs that do not report it. A present aud
	// must still match.
	AllowMissingAudience bool
	// Issuer: when set and the response has iss, they must match.
	Issuer string
	// CacheTTL is how long an active answer is reused (default 30s, never
	// past the token's exp).
	CacheTTL time.Duration
	// NegativeCacheTTL remembers inactive answers (default 0, capped at
	// MaxNegativeCacheTTL).
	NegativeCacheTTL time.Duration
	// CacheSize bounds the number of cached answers (default 10000).
	CacheSize int
	// HTTPClient defaults to a client with a 10s timeout.
	HTTPClient *http.Client
	// Now defaults to time.Now.
	Now func() time.Time
	// GroupsClaim defaults to "groups".
	GroupsClaim string
}

// Introspector validates opaque access tokens by asking the authorization
// server (RFC 7662). Answers are cached briefly under the SHA-256 of the
// token, so the cache never holds a usable token. Safe for concurrent use.
type Introspector struct {
	opts IntrospectionOptions

	mu    sync.Mutex
	cache map[[sha256.Size]byte]introspected
}

type introspected struct {
	token   *Token // nil: inactive
	expires time.Time
}

var _ Validator = (*Introspector)(nil)

// NewIntrospector checks opts and returns an Introspector; no network I/O.
func NewIntrospector(opts IntrospectionOptions) (*Introspector, error) {
	var errs []error
	if u, err := url.Parse(opts.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("bearer: introspection endpoint %q must be an absolute http(s) URL", opts.Endpoint))
	}
	if opts.ClientID == "" {
		errs = append(errs, errors.New("bearer: introspection ClientID is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	opts.CacheTTL = orDefault(opts.CacheTTL, DefaultIntrospectionCacheTTL)
	opts.NegativeCacheTTL = min(max(opts.NegativeCacheTTL, 0), MaxNegativeCacheTTL)
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultIntrospectionCacheSize
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GroupsClaim == "" {
		opts.GroupsClaim = DefaultGroupsClaim
	}
	opts.Audiences = slices.Clone(opts.Audiences)
	return &Introspector{opts: opts, cache: map[[sha256.Size]byte]introspected{}}, nil
}

// Validate introspects raw (or reuses a recent answer). The answer is
// cached independently of the request; the audience is checked against
// what this request expects every time.
func (in *Introspector) Validate(ctx context.Context, raw string, want Expectation) (*Token, error) {
	if raw == "" {
		return nil, invalid("malformed token", nil)
	}
	_, auds, err := expected(want, "", in.opts.Audiences, false, in.opts.AudienceFromRequest)
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256([]byte(raw))
	now := in.opts.Now()
	if tok, ok := in.cached(key, now); ok {
		if tok == nil {
			return nil, invalid("token is not active", nil)
		}
		if err := in.checkAudience(tok, auds); err != nil {
			return nil, err
		}
		return tok, nil
	}
	claims, err := in.introspect(ctx, raw)
	if err != nil {
		return nil, err
	}
	tok, err := in.check(claims, now)
	if err != nil {
		if errors.Is(err, ErrInvalidToken) && in.opts.NegativeCacheTTL > 0 {
			in.store(key, introspected{expires: now.Add(in.opts.NegativeCacheTTL)}, now)
		}
		return nil, err
	}
	until := now.Add(in.opts.CacheTTL)
	if !tok.Expiry.IsZero() && tok.Expiry.Before(until) {
		until = tok.Expiry
	}
	in.store(key, introspected{token: tok, expires: until}, now)
	if err := in.checkAudience(tok, auds); err != nil {
		return nil, err
	}
	return tok, nil
}

// checkAudience applies the resource's audience rule to an active token.
func (in *Introspector) checkAudience(tok *Token, auds []string) error {
	if len(auds) == 0 {
		return nil
	}
	switch {
	case len(tok.Audience) == 0 && !in.opts.AllowMissingAudience:
		return invalid("token has no audience", nil)
	case len(tok.Audience) > 0 &&
		!slices.ContainsFunc(auds, func(a string) bool { return slices.Contains(tok.Audience, a) }):
		return invalid("wrong audience", nil)
	}
	return nil
}

func (in *Introspector) cached(key [sha256.Size]byte, now time.Time) (*Token, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	e, ok := in.cache[key]
	if !ok {
		return nil, false
	}
	if !now.Before(e.expires) {
		delete(in.cache, key)
		return nil, false
	}
	return e.token, true
}

func (in *Introspector) store(key [sha256.Size]byte, e introspected, now time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.cache) >= in.opts.CacheSize {
		for k, old := range in.cache {
			if !now.Before(old.expires) {
				delete(in.cache, k)
			}
		}
		if len(in.cache) >= in.opts.CacheSize {
			clear(in.cache)
		}
	}
	in.cache[key] = e
}

// introspect POSTs the token and returns the response's claims.
func (in *Introspector) introspect(ctx context.Context, raw string) (map[string]any, error) {
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.opts.Endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, unavailable("build introspection request", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 2.3.1: credentials are form-encoded before Basic encoding.
	req.SetBasicAuth(url.QueryEscape(in.opts.ClientID), url.QueryEscape(in.opts.ClientSecret))
	resp, err := in.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, unavailable("introspect token", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocumentSize))
		return nil, unavailable("introspect token", fmt.Errorf("status %d", resp.StatusCode))
	}
	var claims map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocumentSize)).Decode(&claims); err != nil {
		return nil, unavailable("decode introspection response", err)
	}
	return claims, nil
}

// check applies RFC 7662 and the resource's issuer and subject rules to a
// response; the audience depends on the request (checkAudience).
func (in *Introspector) check(claims map[string]any, now time.Time) (*Token, error) {
	if active, _ := claims["active"].(bool); !active {
		return nil, invalid("token is not active", nil)
	}
	tok := tokenFromClaims(claims, in.opts.GroupsClaim, "")
	if !tok.Expiry.IsZero() && !now.Before(tok.Expiry) {
		return nil, invalid("token expired", nil)
	}
	if nbf, ok := number(claims["nbf"]); ok && now.Before(time.Unix(int64(nbf), 0).Add(-DefaultSkew)) {
		return nil, invalid("token not yet valid", nil)
	}
	if in.opts.Issuer != "" && tok.Issuer != "" && strings.TrimSuffix(tok.Issuer, "/") != strings.TrimSuffix(in.opts.Issuer, "/") {
		return nil, invalid("wrong issuer", nil)
	}
	if tok.Subject == "" {
		return nil, invalid("token has no subject", nil)
	}
	return tok, nil
}
