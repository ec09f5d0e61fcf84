package authn

import (
	"context"
	"time"
)

// loginKey carries the session's upstream login from Middleware to the
// handler it wraps.
type loginKey struct{}

type upstreamLogin struct {
	refreshToken string
	sessionEnds  time.Time
	accessToken  string
}

// UpstreamLogin returns the upstream refresh token (empty when the provider
// issued none) and the absolute end of the cookie session that
// authenticated the request whose context is ctx; ok is false when
// Middleware did not authenticate it. The OAuth façade's consent step calls
// it to keep the login with the refresh family it starts, so the family can
// be rechecked at the provider and ends no later than the session would.
// The token never leaves the process: the façade stores it sealed.
func (a *Authenticator) UpstreamLogin(ctx context.Context) (refreshToken string, sessionEnds time.Time, ok bool) {
	l, ok := ctx.Value(loginKey{}).(upstreamLogin)
	if !ok {
		return "", time.Time{}, false
	}
	return l.refreshToken, l.sessionEnds, true
}

// UpstreamTokenFromContext returns the identity provider's access token of
// the cookie session that authenticated the request whose context is ctx
// (renewed by Middleware when it was about to expire); ok is false when
// Middleware did not authenticate the request or the provider issued no
// access token. Token exchange (pkg/tokenexchange) presents it as the
// subject token to obtain a token for a downstream API; it is never
// forwarded to the MCP server itself.
func UpstreamTokenFromContext(ctx context.Context) (accessToken string, ok bool) {
	l, ok := ctx.Value(loginKey{}).(upstreamLogin)
	if !ok || l.accessToken == "" {
		return "", false
	}
	return l.accessToken, true
}
