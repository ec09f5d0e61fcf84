package bearer

import "context"

// Chain sends JWT-shaped tokens to a JWT validator and everything else to an
// introspector, so one resource server accepts both kinds an IdP may issue.
type Chain struct {
	// JWT validates compact JWS tokens; may be nil.
	JWT Validator
	// Opaque validates every other token (an *Introspector); may be nil.
	Opaque Validator
}

var _ Validator = (*Chain)(nil)

// Validate routes raw by its shape.
func (c *Chain) Validate(ctx context.Context, raw string, want Expectation) (*Token, error) {
	if LooksLikeJWT(raw) && c.JWT != nil {
		return c.JWT.Validate(ctx, raw, want)
	}
	if c.Opaque != nil {
		return c.Opaque.Validate(ctx, raw, want)
	}
	return nil, invalid("malformed token", nil)
}
