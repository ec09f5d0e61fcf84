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
