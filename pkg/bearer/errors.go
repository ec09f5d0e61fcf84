// Package bearer decides who an MCP client is from the bearer token it
// presents: it validates JWT access tokens against the issuer's keys,
// introspects opaque ones (RFC 7662), and answers failures with the
// RFC 6750 / RFC 9728 challenges MCP clients follow to log in.
package bearer

import (
	"errors"
	"fmt"
)

// ErrInvalidToken marks a token that must not be accepted (bad signature,
// expired, wrong audience, ...). It maps to 401 invalid_token.
var ErrInvalidToken = errors.New("bearer: invalid token")

// ErrUnavailable marks a failure to decide: the issuer's keys or the
// introspection endpoint could not be reached. It maps to 503, never 401,
// so an IdP outage does not send every client into a login loop.
var ErrUnavailable = errors.New("bearer: token validation unavailable")

// TokenError is an ErrInvalidToken with a short reason that is safe to show
// the caller (it never contains token material).
type TokenError struct {
	// Reason is a fixed, human-readable phrase such as "token expired".
	Reason string
	cause  error
}

// invalid returns a *TokenError for reason, keeping cause for logs.
func invalid(reason string, cause error) error {
	return &TokenError{Reason: reason, cause: cause}
}

// Error implements error.
func (e *TokenError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("invalid token: %s: %v", e.Reason, e.cause)
	}
	return "invalid token: " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidToken) true and keeps the cause.
func (e *TokenError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrInvalidToken, e.cause}
	}
	return []error{ErrInvalidToken}
}

// Reason returns the caller-safe reason of an ErrInvalidToken error, or a
// generic phrase for any other error.
func Reason(err error) string {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	return "invalid token"
}

// unavailable wraps err as ErrUnavailable with context.
func unavailable(what string, err error) error {
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}
