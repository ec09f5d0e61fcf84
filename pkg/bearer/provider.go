package bearer

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ProviderOptions configure NewProviderValidator.
type ProviderOptions struct {
	// Issuer returns the issuer as the provider's tokens spell it. It may
	// return "" until OIDC discovery has run; the validator is then built
	// on a later request. Required.
	Issuer func() string
	// JWKSURL is where the provider's keys are. Empty: discovered from the
	// issuer's metadata.
	JWKSURL string
	// Introspection, when its Endpoint is set, validates opaque tokens
	// (RFC 7662) besides JWTs. Its Issuer, AudienceFromRequest, HTTPClient
	// and Now are set from these options.
	Introspection IntrospectionOptions
	// GroupsClaim names the JWT groups claim (default "groups").
	GroupsClaim string
	// HTTPClient fetches keys and introspects (default: 10s timeout).
	HTTPClient *http.Client
	// Now defaults to time.Now.
	Now func() time.Time
}

// NewProviderValidator returns the validator for access tokens an external
// OIDC provider issues for this resource: JWTs checked against the
// provider's keys, and opaque tokens introspected when an endpoint is
// configured. The audience is each request's resource URL (Expectation),
// so one validator and one key cache serve every expected host. It is built
// on first use, normally after discovery, so the provider's own issuer
// spelling is known.
func NewProviderValidator(opts ProviderOptions) *Lazy {
	return NewLazy(func() (Validator, error) {
		issuer := opts.Issuer()
		jwtv, err := NewJWTValidator(JWTOptions{
			Issuer: issuer, JWKSURL: opts.JWKSURL, AudienceFromRequest: true,
			GroupsClaim: opts.GroupsClaim, HTTPClient: opts.HTTPClient, Now: opts.Now,
		})
		if err != nil {
			return nil, err
		}
		if opts.Introspection.Endpoint == "" {
			return jwtv, nil
		}
		in := opts.Introspection
		in.Issuer, in.AudienceFromRequest, in.HTTPClient, in.Now = issuer, true, opts.HTTPClient, opts.Now
		intro, err := NewIntrospector(in)
		if err != nil {
			return nil, err
		}
		return &Chain{JWT: jwtv, Opaque: intro}, nil
	})
}

// Lazy builds its validator on first use and keeps it once built; a failed
// build (the provider's issuer not yet known) is retried on the next
// request. Safe for concurrent use.
type Lazy struct {
	build func() (Validator, error)
	mu    sync.Mutex
	v     atomic.Pointer[Validator]
}

var _ Validator = (*Lazy)(nil)

// NewLazy returns a Lazy validator that calls build until it succeeds.
func NewLazy(build func() (Validator, error)) *Lazy { return &Lazy{build: build} }

func (l *Lazy) get() (Validator, error) {
	if v := l.v.Load(); v != nil {
		return *v, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v := l.v.Load(); v != nil {
		return *v, nil
	}
	v, err := l.build()
	if err != nil {
		return nil, err
	}
	l.v.Store(&v)
	return v, nil
}

// Validate validates raw with the built validator.
func (l *Lazy) Validate(ctx context.Context, raw string, want Expectation) (*Token, error) {
	v, err := l.get()
	if err != nil {
		return nil, err
	}
	return v.Validate(ctx, raw, want)
}
