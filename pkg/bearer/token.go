package bearer

import (
	"context"
	"strings"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

// Method is the identity.Identity Method value for bearer callers.
const Method = "bearer"

// Default claim names.
const (
	DefaultGroupsClaim = "groups"
)

// Token is a validated access token: what the proxy may rely on about the
// caller and the grant.
type Token struct {
	Subject  string
	Issuer   string
	Audience []string
	// Scopes come from "scope" (space-separated string) or "scp" (array).
	Scopes []string
	// Expiry is zero only for introspected tokens without exp.
	Expiry time.Time
	// ClientID is the OAuth client the token was issued to (azp or
	// client_id).
	ClientID string
	// Identity is the caller as the upstream sees it; Method is "bearer" and
	// Claims holds every claim for authorization rules.
	Identity identity.Identity
	// Claims are all claims of the token (or introspection response).
	Claims map[string]any
}

// Validator turns a raw bearer token into a validated Token. want is what
// the request being served expects of it, for validators that take their
// issuer or audience from the request (IssuerFromRequest,
// AudienceFromRequest); the others ignore it. Implemented by
// *JWTValidator, *Introspector, *Chain and *Lazy. The Token may be shared
// with other requests (JWTValidator answers repeated tokens from a cache
// without copying them): treat it, its slices and its Claims as read-only.
type Validator interface {
	Validate(ctx context.Context, raw string, want Expectation) (*Token, error)
}

type tokenCtxKey struct{}

// NewContext returns ctx carrying t, so later handlers (audit logs, the
// identity assertion) can see scopes and client without re-validating.
func NewContext(ctx context.Context, t *Token) context.Context {
	return context.WithValue(ctx, tokenCtxKey{}, t)
}

// FromContext returns the token stored by NewContext, or nil.
func FromContext(ctx context.Context) *Token {
	t, _ := ctx.Value(tokenCtxKey{}).(*Token)
	return t
}

type rawCtxKey struct{}

// NewRawContext returns ctx carrying the raw bearer token a request was
// authenticated with. It is kept apart from the Token, which validators
// share between requests and caches.
func NewRawContext(ctx context.Context, raw string) context.Context {
	return context.WithValue(ctx, rawCtxKey{}, raw)
}

// RawFromContext returns the raw bearer token stored by NewRawContext
// (ResourceServer.Wrap stores it with ResourceOptions.KeepRawToken); ok is false
// when there is none. Token exchange (pkg/tokenexchange) presents it as the
// subject token when it was issued by the identity provider (external
// mode); it is never forwarded to the MCP server.
func RawFromContext(ctx context.Context) (raw string, ok bool) {
	raw, ok = ctx.Value(rawCtxKey{}).(string)
	return raw, ok && raw != ""
}

// tokenFromClaims builds a Token from a claim set; registered claims have
// already been checked by the caller.
// lift, when not empty, names an object claim whose entries are added to
// Identity.Claims (see JWTOptions.LiftClaim).
func tokenFromClaims(claims map[string]any, groupsClaim, lift string) *Token {
	t := &Token{
		Subject:  str(claims["sub"]),
		Issuer:   str(claims["iss"]),
		Audience: strings1(claims["aud"]),
		Scopes:   scopes(claims),
		ClientID: str(claims["azp"]),
		Claims:   claims,
	}
	if t.ClientID == "" {
		t.ClientID = str(claims["client_id"])
	}
	if exp, ok := number(claims["exp"]); ok {
		t.Expiry = time.Unix(int64(exp), 0)
	}
	t.Identity = identity.Identity{
		Subject:       t.Subject,
		Email:         str(claims["email"]),
		EmailVerified: boolean(claims["email_verified"]),
		Name:          str(claims["name"]),
		Username:      str(claims["preferred_username"]),
		Groups:        strings1(claims[groupsClaim]),
		Method:        Method,
		Claims:        liftClaims(claims, lift),
	}
	return t
}

// liftClaims returns claims with the entries of the object claim lift at
// the top level, and lift itself left out. An entry never replaces a
// top-level claim, so whatever the object holds cannot pass for iss, aud,
// client_id or scope. Without such an object, claims is returned as is.
func liftClaims(claims map[string]any, lift string) map[string]any {
	if lift == "" {
		return claims
	}
	nested, ok := claims[lift].(map[string]any)
	if !ok {
		return claims
	}
	out := make(map[string]any, len(claims)+len(nested))
	for k, v := range claims {
		if k != lift {
			out[k] = v
		}
	}
	for k, v := range nested {
		if _, taken := claims[k]; !taken {
			out[k] = v
		}
	}
	return out
}

// scopes accepts "scope" as a space-separated string (RFC 8693, RFC 9068)
// and "scp" as an array or string (Entra ID, Okta).
func scopes(claims map[string]any) []string {
	if s, ok := claims["scope"].(string); ok {
		return strings.Fields(s)
	}
	switch v := claims["scp"].(type) {
	case string:
		return strings.Fields(v)
	case []any:
		return strings1(v)
	}
	return nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// strings1 accepts a single string or an array of strings (aud, groups).
func strings1(v any) []string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func boolean(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

func number(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case int:
		return float64(v), true
	}
	return 0, false
}
