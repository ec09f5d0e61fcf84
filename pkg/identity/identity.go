// Package identity carries "who is calling" from the authentication layer to
// the forwarding layer without either importing the other.
package identity

import "context"

// Identity is the authenticated caller as the upstream MCP server sees it
// through identity headers. It is deliberately small: only what the proxy
// forwards and what authorization rules look at.
type Identity struct {
	// Subject is the stable user identifier (the OIDC "sub" claim).
	Subject string `json:"sub"`
	// Email is the user's e-mail address when the provider released it.
	Email string `json:"email,omitempty"`
	// EmailVerified mirrors the provider's "email_verified" claim.
	EmailVerified bool `json:"email_verified,omitempty"`
	// Name is a display name.
	Name string `json:"name,omitempty"`
	// Username is the provider's preferred_username, when present.
	Username string `json:"preferred_username,omitempty"`
	// Groups are the group memberships the provider released.
	Groups []string `json:"groups,omitempty"`
	// Method says how the caller authenticated ("cookie", "bearer", "bypass").
	Method string `json:"-"`
	// Claims are the raw claims of a bearer token, so authorization rules
	// can require claims the fields above do not carry. It is nil for
	// cookie sessions, and never stored (json:"-"): sessions stay small.
	Claims map[string]any `json:"-"`
}

type ctxKey struct{}

// NewContext returns a context carrying id. The proxy reads it to set the
// identity headers on the forwarded request.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity stored by NewContext, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}

type assertionKey struct{}

// NewAssertionContext returns a context carrying jws, the signed identity
// assertion for this request. The proxy sends it upstream under its
// assertion header after removing every client-supplied spelling of that
// header; handing it over in the context rather than in the request's
// headers keeps the proxy the only writer of that header.
func NewAssertionContext(ctx context.Context, jws string) context.Context {
	return context.WithValue(ctx, assertionKey{}, jws)
}

// AssertionFromContext returns the assertion stored by NewAssertionContext,
// or "".
func AssertionFromContext(ctx context.Context) string {
	jws, _ := ctx.Value(assertionKey{}).(string)
	return jws
}
