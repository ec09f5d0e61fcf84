package tokenexchange

import (
	"context"
	"net/http"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/authn"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

// SubjectSource returns the subject token of the request's caller, or an
// error wrapping ErrNoSubjectToken when it has none.
type SubjectSource func(r *http.Request) (Subject, error)

// CallerSubject is the SubjectSource for the proxy's callers, after the
// bearer and cookie authenticators:
//   - bearer callers: with bearerFromProvider (oauth.mode=external) the
//     validated bearer token itself, which the provider issued (needs
//     bearer.ResourceOptions.KeepRawToken); otherwise (the façade) the
//     token is the proxy's own and ErrFacadeCaller is returned;
//   - cookie callers: the session's provider access token
//     (authn.UpstreamTokenFromContext); issuer is the provider's issuer,
//     which with the subject keys the cache.
func CallerSubject(issuer string, bearerFromProvider bool) SubjectSource {
	return callerSubject(issuer, bearerFromProvider, authn.UpstreamTokenFromContext)
}

// callerSubject is CallerSubject with the cookie session's token accessor
// given, so tests can stand in for a session.
func callerSubject(issuer string, bearerFromProvider bool, sessionToken func(context.Context) (string, bool)) SubjectSource {
	return func(r *http.Request) (Subject, error) {
		ctx := r.Context()
		if tok := bearer.FromContext(ctx); tok != nil {
			if !bearerFromProvider {
				return Subject{}, ErrFacadeCaller
			}
			raw, ok := bearer.RawFromContext(ctx)
			if !ok || tok.Subject == "" {
				return Subject{}, ErrNoSubjectToken
			}
			return Subject{Issuer: tok.Issuer, Subject: tok.Subject, Token: raw, TokenType: TokenTypeAccessToken}, nil
		}
		at, ok := sessionToken(ctx)
		id := identity.FromContext(ctx)
		if !ok || id == nil || id.Subject == "" {
			return Subject{}, ErrNoSubjectToken
		}
		return Subject{Issuer: issuer, Subject: id.Subject, Token: at, TokenType: TokenTypeAccessToken}, nil
	}
}
