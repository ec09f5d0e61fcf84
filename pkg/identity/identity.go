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
	// Claims are the claims authorization rules read beyond the fields
	// above: every claim of a bearer token, or a cookie session's
	// ExtraClaims (the authenticator copies them here on each request), so
	// a rule on claims.<name> decides both kinds of caller alike. Never
	// stored (json:"-"): a bearer token's claims must not end up in a
	// session or a grant. Read-only: it may be shared between requests.
	Claims map[string]any `json:"-"`
	// ExtraClaims are the claims named in policy.claims that the login
	// kept from the ID token and userinfo (values as decoded JSON: string,
	// bool, float64, []any, map[string]any), bounded in size. They are
	// stored with the session and the façade's grants, so they survive
	// across replicas; bearer callers leave it nil (their Claims has every
	// claim). A session keeps the names listed when it logged in or last
	// refreshed its tokens: a newly listed claim appears after the next
	// login or token refresh. Read-only.
	ExtraClaims map[string]any `json:"extra_claims,omitempty"`
}

// Reserved reports whether a claim is never kept in ExtraClaims: the
// registered JWT, OIDC and OAuth protocol claims (they describe a token,
// not the user, and differ between an ID token and an access token; rules
// see a bearer caller's client and scopes by other names), "ext" (where the
// façade's tokens carry the kept claims) and the standard fields Identity
// already carries.
func Reserved(name string) bool {
	switch name {
	case "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "azp", "nonce",
		"at_hash", "c_hash", "auth_time", "acr", "amr", "sid",
		"client_id", "scope", "scp", "cnf", "act", "may_act", "ext",
		"email", "email_verified", "name", "preferred_username", "groups":
		return true
	}
	return false
}

// Refreshed overlays the identity of a refreshed ID token on the one from
// the login. A refreshed ID token only has to repeat iss, sub and aud (OIDC
// Core 12.2), and some providers send just those: profile claims it leaves
// out keep their login values instead of vanishing. Groups are taken as
// sent, even when absent: an omitted claim cannot be told from a user who
// lost every group, and keeping revoked memberships would fail open. The
// same goes for ExtraClaims: a claim the refreshed tokens no longer carry
// is gone.
func Refreshed(old, fresh Identity) Identity {
	if fresh.Email == "" {
		fresh.Email, fresh.EmailVerified = old.Email, old.EmailVerified
	}
	if fresh.Name == "" {
		fresh.Name = old.Name
	}
	if fresh.Username == "" {
		fresh.Username = old.Username
	}
	return fresh
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
