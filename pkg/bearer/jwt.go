package bearer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"iter"
	"net/http"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Defaults for JWTOptions.
const (
	DefaultSkew = 30 * time.Second
	// DefaultRefreshInterval is the minimum time between two JWKS fetches
	// caused by unknown key IDs: rotation at the IdP is picked up, but a
	// client cannot make the proxy hammer the IdP with made-up kids.
	DefaultRefreshInterval = 30 * time.Second
	// DefaultKeysMaxAge is how long fetched keys are used before they are
	// fetched again on the next request (stale keys stay in use if that
	// fetch fails).
	DefaultKeysMaxAge = time.Hour
	// maxDocumentSize bounds JWKS, discovery and introspection responses.
	maxDocumentSize = 1 << 20
	fetchTimeout    = 10 * time.Second
)

// DefaultAlgorithms is the signature allow-list used when none is
// configured: asymmetric algorithms only, so "none" and HMAC key confusion
// can never verify.
func DefaultAlgorithms() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.PS256, jose.EdDSA}
}

// JWTOptions configure a JWTValidator.
type JWTOptions struct {
	// Issuer is the exact expected "iss". Required unless IssuerFromRequest.
	Issuer string
	// IssuerFromRequest takes the expected "iss" from the Expectation passed
	// to Validate instead of Issuer: the façade's issuer is its base
	// URL, which without an external URL follows the request's checked
	// host. A request without one is refused. It needs KeySet or JWKSURL,
	// since keys cannot be discovered from a per-request issuer.
	IssuerFromRequest bool
	// JWKSURL is where the issuer's keys are. Empty: discovered on first use
	// from the issuer's OpenID or OAuth authorization server metadata.
	JWKSURL string
	// KeySet, when set, replaces fetching: it returns the keys directly (the
	// proxy's own façade keys). It is called on every validation, so it
	// must be cheap; rotation is then immediate.
	KeySet func(ctx context.Context) (*jose.JSONWebKeySet, error)
	// Audiences: the token's aud must contain at least one (the resource
	// URL). Required unless AudienceFromRequest: a token for another API
	// must not open this one.
	Audiences []string
	// AudienceFromRequest takes the expected audience from the Expectation
	// passed to Validate instead of Audiences, so one validator and
	// one key cache serve every host the operator expects. A request
	// without one is refused.
	AudienceFromRequest bool
	// Algorithms is the allow-list (default DefaultAlgorithms). HMAC and
	// "none" are always removed.
	Algorithms []jose.SignatureAlgorithm
	// Skew is the tolerance for exp, nbf and iat (default 30s).
	Skew time.Duration
	// RefreshInterval rate-limits JWKS fetches on unknown kids (default 30s).
	RefreshInterval time.Duration
	// KeysMaxAge re-fetches keys this old on use (default 1h).
	KeysMaxAge time.Duration
	// HTTPClient defaults to a client with a 10s timeout.
	HTTPClient *http.Client
	// Now defaults to time.Now.
	Now func() time.Time
	// GroupsClaim defaults to "groups".
	GroupsClaim string
	// Types, when set, is the allow-list of the JOSE "typ" header, compared
	// case-insensitively with an "application/" prefix ignored (RFC 7515
	// 4.1.9). The façade sets "at+jwt" (RFC 9068) so that other JWTs signed
	// with the same key, such as the identity assertion handed to the MCP
	// server, are never accepted as access tokens. Empty accepts any typ,
	// because IdPs differ ("JWT", "at+jwt" or none).
	Types []string
	// CacheSize bounds the cache of validated tokens (default
	// DefaultJWTCacheSize; negative disables it). A token seen again is
	// accepted without a second signature check until it expires (with
	// Skew), for at most 5 minutes, and only while the key that signed it
	// is still in the key set.
	CacheSize int
	// LiftClaim, when set, names an object claim whose entries become
	// claims of Identity.Claims (never replacing a top-level claim; the
	// object itself is left out there, Token.Claims keeps it). The
	// façade's tokens carry the claims a browser login kept under "ext",
	// so rules read them as they read a cookie session's.
	LiftClaim string
}

// JWTValidator validates JWT access tokens locally against the issuer's
// keys. Safe for concurrent use.
type JWTValidator struct {
	issuer      string
	audiences   []string
	issuerReq   bool // issuer from the request (IssuerFromRequest)
	audienceReq bool // audience from the request (AudienceFromRequest)
	algs        []jose.SignatureAlgorithm
	skew        time.Duration
	now         func() time.Time
	groupsClaim string
	liftClaim   string
	types       []string
	keySet      func(ctx context.Context) (*jose.JSONWebKeySet, error)
	keys        *keyCache
	cache       *jwtCache // nil when disabled
}

var _ Validator = (*JWTValidator)(nil)

// NewJWTValidator checks opts and returns a validator. It does no network
// I/O: keys are fetched on first use, so the proxy starts while the IdP is
// down.
func NewJWTValidator(opts JWTOptions) (*JWTValidator, error) {
	var errs []error
	if opts.Issuer == "" && !opts.IssuerFromRequest {
		errs = append(errs, errors.New("bearer: Issuer is required"))
	}
	if opts.IssuerFromRequest && opts.KeySet == nil && opts.JWKSURL == "" {
		errs = append(errs, errors.New("bearer: IssuerFromRequest needs KeySet or JWKSURL"))
	}
	if len(opts.Audiences) == 0 && !opts.AudienceFromRequest {
		errs = append(errs, errors.New("bearer: at least one audience is required"))
	}
	if opts.JWKSURL != "" && opts.KeySet != nil {
		errs = append(errs, errors.New("bearer: set JWKSURL or KeySet, not both"))
	}
	algs := opts.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms()
	}
	algs = slices.DeleteFunc(slices.Clone(algs), func(a jose.SignatureAlgorithm) bool { return !asymmetric(a) })
	if len(algs) == 0 {
		errs = append(errs, errors.New("bearer: no asymmetric signature algorithm allowed (HMAC and none are never accepted)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Skew <= 0 {
		opts.Skew = DefaultSkew
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GroupsClaim == "" {
		opts.GroupsClaim = DefaultGroupsClaim
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	v := &JWTValidator{
		issuer:      opts.Issuer,
		audiences:   slices.Clone(opts.Audiences),
		issuerReq:   opts.IssuerFromRequest,
		audienceReq: opts.AudienceFromRequest,
		algs:        algs,
		skew:        opts.Skew,
		now:         opts.Now,
		groupsClaim: opts.GroupsClaim,
		liftClaim:   opts.LiftClaim,
		keySet:      opts.KeySet,
	}
	switch {
	case opts.CacheSize == 0:
		v.cache = newJWTCache(DefaultJWTCacheSize)
	case opts.CacheSize > 0:
		v.cache = newJWTCache(opts.CacheSize)
	}
	for _, t := range opts.Types {
		v.types = append(v.types, normalizeType(t))
	}
	if v.keySet == nil {
		v.keys = newKeyCache(keyCacheOptions{
			issuer:          opts.Issuer,
			jwksURL:         opts.JWKSURL,
			client:          opts.HTTPClient,
			now:             opts.Now,
			refreshInterval: orDefault(opts.RefreshInterval, DefaultRefreshInterval),
			maxAge:          orDefault(opts.KeysMaxAge, DefaultKeysMaxAge),
		})
	}
	return v, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// asymmetric reports whether a is a public-key signature algorithm.
func asymmetric(a jose.SignatureAlgorithm) bool {
	switch a {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA:
		return true
	}
	return false
}

// header is the part of the JOSE header read before verification, to give
// a precise reason for a disallowed algorithm.
type header struct {
	Alg string `json:"alg"`
}

// Validate verifies raw's signature, issuer, audience and lifetime and
// returns its claims. A token validated before is answered from the cache
// while it is unexpired and its signing key is still published; the cached
// Token itself is returned, shared by every request carrying that token
// (read-only, see Validator), so a hit copies no claims.
func (v *JWTValidator) Validate(ctx context.Context, raw string, want Expectation) (*Token, error) {
	iss, auds, err := expected(want, v.issuer, v.audiences, v.issuerReq, v.audienceReq)
	if err != nil {
		return nil, err
	}
	if v.cache == nil {
		tok, _, err := v.validate(ctx, raw, iss, auds)
		return tok, err
	}
	// Sum256 only reads its input: hashing the string's bytes in place
	// spares every request a copy of the token.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	now := v.now()
	if e := v.cache.get(sum, now, v.skew); e != nil {
		// The cache remembers the signature and lifetime; issuer and
		// audience are what this request expects, checked every time.
		if err := checkIssuerAudience(e.iss, e.aud, iss, auds); err != nil {
			return nil, err
		}
		set, err := v.cachedKeys(ctx, now)
		if err == nil && keyStillTrusted(set, e.kid, e.alg, e.key) {
			return e.tok, nil
		}
		// The key is gone or the keys are unavailable: validate afresh,
		// which gives the precise error (or finds a rotated-in key).
		v.cache.remove(sum, e)
	}
	tok, e, err := v.validate(ctx, raw, iss, auds)
	if err != nil {
		return nil, err
	}
	e.tok = tok
	v.cache.put(sum, e, v.now(), v.skew)
	return tok, nil
}

// validate does the full validation. Besides the token it returns a cache
// entry (without its token) naming the verifying key and the expiry.
func (v *JWTValidator) validate(ctx context.Context, raw, iss string, auds []string) (*Token, *jwtCacheEntry, error) {
	alg, err := peekAlg(raw)
	if err != nil {
		return nil, nil, err
	}
	if !slices.Contains(v.algs, alg) {
		return nil, nil, invalid("unsupported signing algorithm", nil)
	}
	tok, err := jwt.ParseSigned(raw, v.algs)
	if err != nil {
		return nil, nil, invalid("malformed token", err)
	}
	if len(tok.Headers) != 1 {
		return nil, nil, invalid("malformed token", nil)
	}
	hdr := tok.Headers[0]
	if !v.typeAllowed(hdr) {
		return nil, nil, invalid("wrong token type", nil)
	}
	var registered jwt.Claims
	var claims map[string]any
	key, err := v.verify(ctx, tok, hdr, &registered, &claims)
	if err != nil {
		return nil, nil, err
	}
	if err := v.checkClaims(&registered, iss, auds); err != nil {
		return nil, nil, err
	}
	e := &jwtCacheEntry{
		iss:   registered.Issuer,
		aud:   slices.Clone([]string(registered.Audience)),
		exp:   registered.Expiry.Time(),
		until: v.now().Add(jwtCacheMaxAge),
		kid:   hdr.KeyID,
		alg:   hdr.Algorithm,
		key:   key,
	}
	return tokenFromClaims(claims, v.groupsClaim, v.liftClaim), e, nil
}

// verify finds the key for hdr (refreshing the cache once for an unknown
// kid), decodes the claims with it and returns the key that verified.
func (v *JWTValidator) verify(ctx context.Context, tok *jwt.JSONWebToken, hdr jose.Header, out ...any) (crypto.PublicKey, error) {
	for attempt := 0; attempt < 2; attempt++ {
		set, err := v.currentKeys(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		candidates := candidateKeys(set, hdr)
		if len(candidates) == 0 {
			continue
		}
		for _, key := range candidates {
			if err := tok.Claims(key, out...); err == nil {
				return key, nil
			}
		}
		return nil, invalid("bad signature", nil)
	}
	return nil, invalid("unknown signing key", nil)
}

// cachedKeys is currentKeys(ctx, false) with the time the caller already
// read: a cache hit reads the clock once.
func (v *JWTValidator) cachedKeys(ctx context.Context, now time.Time) (*jose.JSONWebKeySet, error) {
	if v.keySet != nil {
		return v.currentKeys(ctx, false)
	}
	return v.keys.getAt(ctx, now)
}

func (v *JWTValidator) currentKeys(ctx context.Context, unknownKID bool) (*jose.JSONWebKeySet, error) {
	if v.keySet != nil {
		if unknownKID {
			return nil, invalid("unknown signing key", nil)
		}
		set, err := v.keySet(ctx)
		if err != nil {
			return nil, unavailable("local key set", err)
		}
		return set, nil
	}
	if unknownKID {
		return v.keys.refresh(ctx)
	}
	return v.keys.get(ctx)
}

// candidateKeys are the public signing keys of set that may have signed a
// token with hdr: matching kid (any key when the token has none) and a
// compatible algorithm.
func candidateKeys(set *jose.JSONWebKeySet, hdr jose.Header) []any {
	return slices.Collect(eachCandidateKey(set, hdr))
}

// eachCandidateKey yields what candidateKeys returns without collecting it
// (keyStillTrusted runs on every cached validation).
func eachCandidateKey(set *jose.JSONWebKeySet, hdr jose.Header) iter.Seq[any] {
	return func(yield func(any) bool) {
		if set == nil {
			return
		}
		for _, k := range set.Keys {
			if hdr.KeyID != "" && k.KeyID != hdr.KeyID {
				continue
			}
			if k.Use != "" && k.Use != "sig" {
				continue
			}
			if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
				continue
			}
			if !k.IsPublic() {
				k = k.Public()
			}
			switch k.Key.(type) {
			case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
				if !yield(k.Key) {
					return
				}
			}
		}
	}
}

// typeAllowed applies the typ allow-list, if any.
func (v *JWTValidator) typeAllowed(hdr jose.Header) bool {
	if len(v.types) == 0 {
		return true
	}
	typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string)
	return slices.Contains(v.types, normalizeType(typ))
}

// normalizeType makes "application/at+JWT" and "at+jwt" compare equal.
func normalizeType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	return strings.TrimPrefix(t, "application/")
}

// checkClaims checks the registered claims after the signature verified.
func (v *JWTValidator) checkClaims(c *jwt.Claims, iss string, auds []string) error {
	if c.Expiry == nil {
		return invalid("token has no expiry", nil)
	}
	err := c.ValidateWithLeeway(jwt.Expected{Issuer: iss, Time: v.now()}, v.skew)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return invalid("token expired", err)
	case errors.Is(err, jwt.ErrNotValidYet):
		return invalid("token not yet valid", err)
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return invalid("token issued in the future", err)
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return invalid("wrong issuer", err)
	case err != nil:
		return invalid("invalid claims", err)
	}
	if err := checkIssuerAudience(c.Issuer, c.Audience, iss, auds); err != nil {
		return err
	}
	if c.Subject == "" {
		return invalid("token has no subject", nil)
	}
	return nil
}

// checkIssuerAudience compares a token's iss and aud with what the request
// expects (exact issuer; at least one audience in common).
func checkIssuerAudience(tokenIss string, tokenAud []string, iss string, auds []string) error {
	if iss == "" || tokenIss != iss {
		return invalid("wrong issuer", nil)
	}
	if !slices.ContainsFunc(auds, func(a string) bool { return slices.Contains(tokenAud, a) }) {
		return invalid("wrong audience", nil)
	}
	return nil
}

// peekAlg reads the alg of a compact JWS header without trusting it, so a
// token with a disallowed algorithm gets a precise reason.
func peekAlg(raw string) (jose.SignatureAlgorithm, error) {
	if !LooksLikeJWT(raw) {
		return "", invalid("malformed token", nil)
	}
	seg, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return "", invalid("malformed token", err)
	}
	var h header
	if err := json.Unmarshal(b, &h); err != nil {
		return "", invalid("malformed token", err)
	}
	return jose.SignatureAlgorithm(h.Alg), nil
}

// LooksLikeJWT reports whether raw has the shape of a compact JWS: three
// non-empty base64url segments (an unsigned "alg: none" token has an empty
// third segment and is routed here too, to be rejected).
func LooksLikeJWT(raw string) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
