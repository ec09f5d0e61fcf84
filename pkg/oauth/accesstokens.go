package oauth

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// RevocationChecker answers whether an access token this server issued was
// revoked before it expired: directly (its jti, through /oauth2/revoke) or
// with its refresh family (its fid: revoked on reuse, on revocation of a
// refresh token, or when the user no longer passes upstream). An error
// means it cannot tell. Server.IsRevoked answers from the store; anything
// else that knows the revoked tokens and families (a replica-local set kept
// current by pub/sub) can take its place in AccessTokenOptions.
type RevocationChecker interface {
	Revoked(ctx context.Context, jti, family string) (bool, error)
}

// storeRevocations asks the store, one round trip per check (IsRevoked).
type storeRevocations struct{ s *Server }

func (c storeRevocations) Revoked(ctx context.Context, jti, family string) (bool, error) {
	return c.s.IsRevoked(ctx, jti, family)
}

// AccessTokenOptions configure AccessTokenValidator.
type AccessTokenOptions struct {
	// GroupsClaim names the groups claim (default bearer.DefaultGroupsClaim).
	GroupsClaim string
	// Revocations answers the revocation check. Nil: the store (IsRevoked).
	Revocations RevocationChecker
	// Logger records each token accepted without its revocation check.
	// Default: the server's logger.
	Logger *zap.Logger
}

// AccessTokenValidator returns the resource server's validator for the
// access tokens this server issues: signed with its keys (read in process,
// no HTTP round trip), of type at+jwt, for the issuer and audience each
// request expects (its base URL and resource URL), and not revoked.
func (s *Server) AccessTokenValidator(opts AccessTokenOptions) (bearer.Validator, error) {
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{
		IssuerFromRequest: true, AudienceFromRequest: true, KeySet: s.PublicKeys,
		// Only access tokens: the identity assertion is signed with the
		// same key and must not open the MCP endpoint.
		Types:       []string{AccessTokenType},
		GroupsClaim: opts.GroupsClaim, Now: s.now,
		// The claims the browser login kept, for rules (AccessClaims.Ext).
		LiftClaim: ExtClaim,
	})
	if err != nil {
		return nil, fmt.Errorf("oauth: access token validator: %w", err)
	}
	if opts.Revocations == nil {
		opts.Revocations = storeRevocations{s}
	}
	if opts.Logger == nil {
		opts.Logger = s.log
	}
	return &revocationCheck{Validator: v, revocations: opts.Revocations, log: opts.Logger}, nil
}

// revocationCheck refuses access tokens revoked before they expire.
//
// When the revocation check cannot answer (the store is down), the token is
// accepted: DESIGN.md promises that bearer requests keep working while Redis
// is down, and the token has already passed every check that needs no
// store (signature, issuer, audience, type, expiry). What is given up is
// only a revocation made before the outage, for at most the remaining
// lifetime of a short-lived access token; each such acceptance is logged.
type revocationCheck struct {
	bearer.Validator
	revocations RevocationChecker
	log         *zap.Logger
}

func (c *revocationCheck) Validate(ctx context.Context, raw string, want bearer.Expectation) (*bearer.Token, error) {
	t, err := c.Validator.Validate(ctx, raw, want)
	if err != nil {
		return nil, err
	}
	jti, _ := t.Claims["jti"].(string)
	family, _ := t.Claims["fid"].(string)
	revoked, err := c.revocations.Revoked(ctx, jti, family)
	if err != nil {
		c.log.Warn("session store unavailable; accepting a valid access token without its revocation check",
			zap.String("request_id", requestid.FromContext(ctx)), zap.Error(err))
		return t, nil
	}
	if revoked {
		return nil, fmt.Errorf("%w: token revoked", bearer.ErrInvalidToken)
	}
	return t, nil
}
