package oidc

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

// ErrVerification means a response from the provider failed verification
// (ID token signature, issuer, audience, expiry or algorithm, nonce,
// userinfo subject), or its signing keys could not be fetched to check it.
// The login must be refused.
var ErrVerification = errors.New("oidc: provider response failed verification")

// errNonceMismatch means the ID token was not issued for the login this
// callback belongs to (a replayed or injected code).
var errNonceMismatch = errors.New("ID token nonce does not match the login request")

// errUserinfoSubject means the userinfo response is about another user than
// the ID token (OIDC Core 5.3.2 requires rejecting it).
var errUserinfoSubject = errors.New("userinfo sub does not match the ID token")

// claimSet is the subset of ID token / userinfo claims that make up an
// identity, plus the raw claims for the configurable groups claim.
type claimSet struct {
	Subject           string    `json:"sub"`
	Email             string    `json:"email"`
	EmailVerified     flexBool  `json:"email_verified"`
	Name              string    `json:"name"`
	PreferredUsername string    `json:"preferred_username"`
	raw               rawClaims `json:"-"`
}

type rawClaims map[string]json.RawMessage

// flexBool accepts true/false and "true"/"false": some providers (AWS
// Cognito among them) send email_verified as a string.
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*b = flexBool(v)
	case string:
		parsed, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("email_verified %q: %w", v, err)
		}
		*b = flexBool(parsed)
	case nil:
		*b = false
	default:
		return fmt.Errorf("email_verified has type %T", v)
	}
	return nil
}

// claimer is what go-oidc's IDToken and UserInfo have in common.
type claimer interface {
	Claims(v any) error
}

func parseClaims(c claimer) (*claimSet, error) {
	var cs claimSet
	if err := c.Claims(&cs); err != nil {
		return nil, fmt.Errorf("decode claims: %w", err)
	}
	if err := c.Claims(&cs.raw); err != nil {
		return nil, fmt.Errorf("decode claims: %w", err)
	}
	return &cs, nil
}

// verify checks the ID token (signature, issuer, audience, expiry via
// go-oidc; nonce here when non-empty), then merges userinfo if configured.
func (rp *RelyingParty) verify(ctx context.Context, d *discovery, rawIDToken, nonce string, tok *oauth2.Token) (*claimSet, error) {
	idt, err := d.verifier.Verify(ctx, rawIDToken)
	if err != nil {
		return nil, fmt.Errorf("%w: ID token: %w", ErrVerification, err)
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, fmt.Errorf("%w: %w", ErrVerification, errNonceMismatch)
	}
	cs, err := parseClaims(idt)
	if err != nil {
		return nil, fmt.Errorf("%w: ID token: %w", ErrVerification, err)
	}
	if cs.Subject == "" {
		return nil, fmt.Errorf("%w: ID token has no sub", ErrVerification)
	}
	if !rp.useUserInfo {
		return cs, nil
	}
	info, err := d.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return nil, fmt.Errorf("userinfo: %w", err)
	}
	ucs, err := parseClaims(info)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo: %w", ErrVerification, err)
	}
	if subtle.ConstantTimeCompare([]byte(ucs.Subject), []byte(cs.Subject)) != 1 {
		return nil, fmt.Errorf("%w: %w", ErrVerification, errUserinfoSubject)
	}
	cs.merge(ucs)
	return cs, nil
}

// merge overlays userinfo claims: what userinfo says wins, what it omits is
// kept from the ID token.
func (cs *claimSet) merge(u *claimSet) {
	if u.Email != "" {
		_, stated := u.raw["email_verified"]
		switch {
		case stated:
			cs.EmailVerified = u.EmailVerified
		case u.Email != cs.Email:
			// A different address whose verification nobody vouched for.
			cs.EmailVerified = false
		}
		cs.Email = u.Email
	}
	if u.Name != "" {
		cs.Name = u.Name
	}
	if u.PreferredUsername != "" {
		cs.PreferredUsername = u.PreferredUsername
	}
	for k, v := range u.raw {
		if cs.raw == nil {
			cs.raw = rawClaims{}
		}
		cs.raw[k] = v
	}
}

func (cs *claimSet) identity(groupsClaim string) identity.Identity {
	return identity.Identity{
		Subject:       cs.Subject,
		Email:         cs.Email,
		EmailVerified: bool(cs.EmailVerified),
		Name:          cs.Name,
		Username:      cs.PreferredUsername,
		Groups:        groups(cs.raw[groupsClaim]),
	}
}

// MaxExtraClaimsBytes bounds the JSON encoding of the extra claims a login
// keeps (identity.Identity.ExtraClaims): they are stored in every session
// and grant and carried in every façade access token, so a provider that
// puts a large document in a listed claim must not inflate all of them.
const MaxExtraClaimsBytes = 4096

// extraClaims picks the claims named in names out of raw, in the order of
// names, skipping reserved names (identity.Reserved), absent and null ones.
// A claim that would take the encoding past MaxExtraClaimsBytes is left out
// with a warning naming it (never its value, which may be personal data);
// later, smaller ones may still fit. Nil when nothing is kept.
func extraClaims(raw rawClaims, names []string, log *zap.Logger) map[string]any {
	var kept map[string]any
	size := len("{}")
	for _, name := range names {
		if identity.Reserved(name) {
			continue
		}
		if _, dup := kept[name]; dup {
			continue
		}
		r, ok := raw[name]
		if !ok {
			continue
		}
		var v any
		if err := json.Unmarshal(r, &v); err != nil || v == nil {
			continue
		}
		// Measure what encoding it again costs (escaping may grow it),
		// since that is what sessions, grants and tokens will hold.
		enc, err := json.Marshal(v)
		if err != nil {
			continue
		}
		key, _ := json.Marshal(name) // a string always encodes
		n := len(key) + len(":") + len(enc)
		if kept != nil {
			n += len(",")
		}
		if size+n > MaxExtraClaimsBytes {
			log.Warn("oidc: a claim listed in policy.claims is too large to keep; the session goes without it",
				zap.String("claim", name), zap.Int("claim_bytes", len(enc)), zap.Int("limit_bytes", MaxExtraClaimsBytes))
			continue
		}
		if kept == nil {
			kept = make(map[string]any, len(names))
		}
		kept[name] = v
		size += n
	}
	return kept
}

// groups reads a groups claim that is a string or an array of strings;
// anything else (absent, null, numbers, objects) yields no groups rather
// than failing the login.
func groups(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil
		}
		return []string{one}
	}
	var many []any
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil
	}
	out := make([]string, 0, len(many))
	for _, g := range many {
		if s, ok := g.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

var _ claimer = (*gooidc.IDToken)(nil)
var _ claimer = (*gooidc.UserInfo)(nil)
