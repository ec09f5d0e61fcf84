// Package oidc is the proxy's relying party towards the upstream OpenID
// Connect provider: discovery, the authorization code flow with PKCE, ID token
// verification, userinfo, refresh and RP-initiated logout. It wraps
// github.com/coreos/go-oidc/v3 and golang.org/x/oauth2 and does no HTTP
// serving of its own.
package oidc

import (
	"errors"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

// ErrInvalidGrant means the provider rejected a refresh token or code with
// "invalid_grant". For a refresh it means the session cannot continue; every
// other refresh error is treated as temporary and keeps the session.
var ErrInvalidGrant = errors.New("oidc: invalid_grant")

// ErrNotReady means discovery has not succeeded yet.
var ErrNotReady = errors.New("oidc: provider discovery has not succeeded yet")

// Tokens is the result of a code exchange or a refresh.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	IDToken      string
	// Expiry is the access token's expiry (zero if the provider sent none).
	Expiry time.Time
	// Identity is taken from the verified ID token claims, completed from
	// userinfo when configured; its ExtraClaims are the claims named in
	// Options.ExtraClaims (as set when the tokens were received).
	Identity identity.Identity
}
