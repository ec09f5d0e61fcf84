package bearer

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// ResourceOptions configure a ResourceServer.
type ResourceOptions struct {
	// Validator checks tokens (a *JWTValidator, *Introspector or *Chain).
	// Required.
	Validator Validator
	// ResourceMetadataURL returns the absolute URL of the RFC 9728
	// metadata for r, advertised in every challenge. Required.
	ResourceMetadataURL func(r *http.Request) string
	// Expect returns what r expects of its token (the resource URL as
	// audience and, for the façade, the base URL as issuer), passed to the
	// Validator. Nil expects nothing beyond the validator's own settings.
	Expect func(r *http.Request) Expectation
	// RequiredScopes must all be granted to the token; they are also
	// advertised in challenges as scope="...".
	RequiredScopes []string
	// KeepRawToken puts the validated raw token into the request context
	// (RawFromContext), for token exchange in external mode, where it is
	// the provider's token. Off, requests do not pay for the context value.
	KeepRawToken bool
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
}

// ResourceServer authenticates MCP clients by bearer token and answers the
// challenges (RFC 6750, RFC 9728) that start their OAuth flow. Safe for
// concurrent use.
type ResourceServer struct {
	validator   Validator
	metadataURL func(r *http.Request) string
	expect      func(r *http.Request) Expectation
	scopes      []string
	scopeParam  string
	keepRaw     bool
	log         *zap.Logger
}

// NewResourceServer returns a ResourceServer for opts. It panics when a
// required option is missing: that is a wiring bug, not a runtime
// condition.
func NewResourceServer(opts ResourceOptions) *ResourceServer {
	if opts.Validator == nil || opts.ResourceMetadataURL == nil {
		panic("bearer: NewResourceServer needs a Validator and ResourceMetadataURL")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &ResourceServer{
		validator:   opts.Validator,
		metadataURL: opts.ResourceMetadataURL,
		expect:      opts.Expect,
		scopes:      slices.Clone(opts.RequiredScopes),
		scopeParam:  strings.Join(opts.RequiredScopes, " "),
		keepRaw:     opts.KeepRawToken,
		log:         opts.Logger,
	}
}

// Wrap authenticates requests carrying "Authorization: Bearer" and passes
// every other request to fallback (the cookie authenticator), so browsers
// keep working on the same endpoint. A validated caller reaches next with
// its identity, the validated Token and, with KeepRawToken, the raw token
// (RawFromContext) in the context and without the Authorization header: the client's token is
// never forwarded upstream.
func (s *ResourceServer) Wrap(next, fallback http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, present, ok := bearerToken(r)
		if !present {
			fallback.ServeHTTP(w, r)
			return
		}
		if !ok {
			s.invalidToken(w, r, "malformed authorization header")
			return
		}
		var want Expectation
		if s.expect != nil {
			want = s.expect(r)
		}
		tok, err := s.validator.Validate(r.Context(), raw, want)
		switch {
		case errors.Is(err, ErrUnavailable):
			s.logFor(r.Context()).Error("bearer token validation unavailable", zap.Error(err))
			w.Header().Set("Retry-After", "5")
			apierror.Write(w, r, http.StatusServiceUnavailable, apierror.CodeUpstreamUnavailable,
				"the identity provider cannot be reached to validate your token; retry shortly")
			return
		case err != nil:
			s.logFor(r.Context()).Debug("bearer token rejected", zap.String("reason", Reason(err)))
			s.invalidToken(w, r, Reason(err))
			return
		}
		if !s.hasScopes(tok) {
			s.insufficientScope(w, r)
			return
		}
		ctx := identity.NewContext(r.Context(), callerIdentity(tok))
		ctx = NewContext(ctx, tok)
		if s.keepRaw {
			ctx = NewRawContext(ctx, raw)
		}
		r = r.WithContext(ctx)
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r)
	})
}

// callerIdentity is tok's Identity as the request's identity. Tokens from
// this package carry Method already, and their Identity is then shared
// as it is, like the Token itself (read-only, see Validator), which spares
// every request a copy; any other Token gets a copy with Method set.
func callerIdentity(tok *Token) *identity.Identity {
	if tok.Identity.Method == Method {
		return &tok.Identity
	}
	id := tok.Identity
	id.Method = Method
	return &id
}

// logFor is the logger for lines about the request whose context is ctx
// (see requestid.Logger).
func (s *ResourceServer) logFor(ctx context.Context) *zap.Logger {
	return requestid.Logger(ctx, s.log)
}

// Challenge answers a request without credentials: 401 with
// WWW-Authenticate: Bearer resource_metadata="..." (and scope), which is
// how MCP clients discover where to log in. Pass it as the cookie
// authenticator's Unauthenticated handler.
func (s *ResourceServer) Challenge(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", s.challenge(r))
	apierror.Write(w, r, http.StatusUnauthorized, apierror.CodeUnauthenticated,
		"authentication required: send a bearer token, or log in")
}

func (s *ResourceServer) invalidToken(w http.ResponseWriter, r *http.Request, reason string) {
	w.Header().Set("WWW-Authenticate", s.challenge(r, "error", "invalid_token", "error_description", reason))
	apierror.Write(w, r, http.StatusUnauthorized, apierror.CodeUnauthenticated, "invalid bearer token: "+reason)
}

func (s *ResourceServer) insufficientScope(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", s.challenge(r, "error", "insufficient_scope"))
	apierror.Write(w, r, http.StatusForbidden, apierror.CodeForbidden,
		"the token lacks a required scope: "+s.scopeParam)
}

// challenge builds a Bearer challenge with params (name, value pairs),
// then scope and resource_metadata.
func (s *ResourceServer) challenge(r *http.Request, params ...string) string {
	if s.scopeParam != "" {
		params = append(params, "scope", s.scopeParam)
	}
	params = append(params, "resource_metadata", s.metadataURL(r))
	return Challenge(params...)
}

func (s *ResourceServer) hasScopes(t *Token) bool {
	for _, want := range s.scopes {
		if !slices.Contains(t.Scopes, want) {
			return false
		}
	}
	return true
}

// Challenge formats a Bearer WWW-Authenticate value from name, value pairs,
// quoting each value as an RFC 9110 quoted-string.
func Challenge(params ...string) string {
	var b strings.Builder
	b.WriteString("Bearer")
	for i := 0; i+1 < len(params); i += 2 {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteString(", ")
		}
		b.WriteString(params[i])
		b.WriteByte('=')
		b.WriteString(quote(params[i+1]))
	}
	return b.String()
}

// quote returns v as a quoted-string: '"' and '\' are escaped and bytes a
// header may not carry (controls, DEL) are dropped.
func quote(v string) string {
	var b strings.Builder
	b.Grow(len(v) + 2)
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t' || (c >= 0x20 && c != 0x7f):
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// bearerToken extracts the token of "Authorization: Bearer <token>".
// present is false when the request carries no bearer credentials at all
// (no header, or another scheme); ok is false for a malformed one.
func bearerToken(r *http.Request) (token string, present, ok bool) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", false, false
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		if len(values) == 1 {
			return "", false, false
		}
		return "", true, false
	}
	if len(values) != 1 {
		return "", true, false
	}
	token = strings.TrimSpace(rest)
	if token == "" || hasSeparator(token) {
		return "", true, false
	}
	return token, true, true
}

// hasSeparator reports whether token holds a space, tab or comma: what
// strings.ContainsAny(token, " \t,") says, with one vectorised byte search
// per separator instead of a byte-by-byte set lookup over a token of a
// kilobyte or so on every request.
func hasSeparator(token string) bool {
	return strings.IndexByte(token, ' ') >= 0 || strings.IndexByte(token, '\t') >= 0 || strings.IndexByte(token, ',') >= 0
}
