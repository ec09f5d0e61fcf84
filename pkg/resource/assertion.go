package resource

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// AssertionHeader carries the signed identity assertion to the MCP server.
// The proxy (proxy.Options.AssertionHeader) strips it in any spelling from
// every request and sets it from the context Wrap fills.
const AssertionHeader = "X-MCP-Identity-Assertion"

// DefaultAssertionTTL is the assertion lifetime: long enough for clock skew
// and one request, too short to be worth stealing.
const DefaultAssertionTTL = 60 * time.Second

// Signer signs JWT claims with a key published in the proxy's JWKS
// (/oauth2/jwks). The façade's key manager satisfies it.
type Signer interface {
	// Sign returns a compact JWS of claims, with the key id in the header.
	Sign(claims map[string]any) (string, error)
	// KID is the id of the current signing key.
	KID() string
}

// AsserterOptions configure an Asserter.
type AsserterOptions struct {
	// Issuer returns the proxy's external base URL for r (the "iss").
	// Required.
	Issuer func(r *http.Request) string
	// Audience is the "aud" the MCP server expects. Required.
	Audience string
	// TTL defaults to DefaultAssertionTTL.
	TTL time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
}

// Asserter adds a short-lived signed statement of the caller's identity to
// forwarded requests, so an MCP server that does not trust the network can
// verify who is calling against the proxy's JWKS instead of trusting plain
// identity headers.
type Asserter struct {
	signer Signer
	opts   AsserterOptions
}

// NewAsserter checks opts and returns an Asserter signing with signer.
func NewAsserter(signer Signer, opts AsserterOptions) (*Asserter, error) {
	var errs []error
	if signer == nil {
		errs = append(errs, errors.New("resource: asserter needs a Signer"))
	}
	if opts.Issuer == nil {
		errs = append(errs, errors.New("resource: asserter needs an Issuer"))
	}
	if opts.Audience == "" {
		errs = append(errs, errors.New("resource: asserter needs an Audience"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultAssertionTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Asserter{signer: signer, opts: opts}, nil
}

// Claims returns the assertion claims for id in r.
func (a *Asserter) Claims(r *http.Request, id *identity.Identity) map[string]any {
	now := a.opts.Now()
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	c := map[string]any{
		"iss": a.opts.Issuer(r),
		"aud": a.opts.Audience,
		"sub": id.Subject,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(a.opts.TTL).Unix(),
		"jti": hex.EncodeToString(jti[:]),
	}
	if id.Email != "" {
		c["email"] = id.Email
		c["email_verified"] = id.EmailVerified
	}
	if id.Name != "" {
		c["name"] = id.Name
	}
	if id.Username != "" {
		c["preferred_username"] = id.Username
	}
	if len(id.Groups) > 0 {
		c["groups"] = id.Groups
	}
	if id.Method != "" {
		c["amr"] = []string{id.Method}
	}
	return c
}

// Wrap adds a fresh assertion for the caller in the context, handed to the
// proxy with identity.NewAssertionContext: the proxy removes every
// client-sent spelling of AssertionHeader from every forwarded request and
// is the only one to set it. Without an identity the request passes without
// an assertion; failing to sign is a 500 (the upstream must not get a
// request it would treat as anonymous by mistake).
func (a *Asserter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := identity.FromContext(r.Context()); id != nil {
			jws, err := a.signer.Sign(a.Claims(r, id))
			if err != nil {
				a.opts.Logger.Error("sign identity assertion", requestid.LogField(r.Context()), zap.String("kid", a.signer.KID()), zap.Error(err))
				apierror.Write(w, r, http.StatusInternalServerError, apierror.CodeInternal, "could not sign the identity assertion")
				return
			}
			r = r.WithContext(identity.NewAssertionContext(r.Context(), jws))
		}
		next.ServeHTTP(w, r)
	})
}
