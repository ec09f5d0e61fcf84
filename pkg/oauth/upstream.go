package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// A refresh family (everything issued from one consent) is held to the
// user's standing at the identity provider:
//
//   - it ends at a fixed time set at consent (Options.RefreshMaxLifetime),
//     however often it is refreshed;
//   - it keeps the browser session's upstream refresh token and, on a
//     refresh at least Options.UpstreamRecheck after the last check, renews
//     it at the provider and takes the user's identity from the answer. If
//     the provider refuses (invalid_grant, e.g. the user was disabled), the
//     family ends. If the provider cannot be reached, the client gets 503
//     temporarily_unavailable and may retry with the same refresh token:
//     an outage must not log everybody out;
//   - without an upstream refresh token it ends no later than the browser
//     session it came from (session.ttl after the login);
//   - the authorization rules and the required scopes are evaluated again
//     on every refresh.
//
// The family state, upstream refresh token included, is sealed with the
// session package's AEAD under a key that only the client holds: codes and
// refresh tokens are encoded session tickets (the same format and MAC as
// the session cookie), stored only as their hash. A dump of the store
// yields neither usable façade credentials nor the upstream token.

// LoginSource tells the consent step which browser login approved it
// (implemented by *authn.Authenticator, whose middleware wraps consent).
type LoginSource interface {
	// UpstreamLogin returns the upstream refresh token of the cookie
	// session that authenticated the request whose context is ctx (empty
	// when the provider issued none) and the session's absolute end.
	// ok is false when the request carries no such session.
	UpstreamLogin(ctx context.Context) (refreshToken string, sessionEnds time.Time, ok bool)
}

// Upstream renews a login at the identity provider (implemented by
// *oidc.RelyingParty, the one the browser login uses).
type Upstream interface {
	// Refresh redeems an upstream refresh token. errors.Is(err,
	// oidc.ErrInvalidGrant) means the provider refused it for good; any
	// other error is temporary. Tokens.Identity is zero when the provider
	// sent no ID token.
	Refresh(ctx context.Context, refreshToken string) (*oidc.Tokens, error)
}

// Authorizer holds the authorization rules (implemented by *authz.Policy,
// whose rules are swapped on reload; the façade asks it on every refresh,
// so reloaded rules apply at once).
type Authorizer interface {
	Check(id *identity.Identity) error
}

// upstreamTimeout bounds an upstream refresh. It runs detached from the
// client's request: a client that hangs up must not abort a rotation of the
// upstream refresh token halfway, which would lose the new one.
const upstreamTimeout = 30 * time.Second

// familyState is what a refresh family carries from one credential (code or
// refresh token) to the next. It lives sealed in the credential's
// single-use marker, so spending the credential also removes it.
type familyState struct {
	// EndsAt is the family's absolute end, fixed at consent.
	EndsAt time.Time `json:"ends"`
	// CheckedAt is when the user was last established upstream (the
	// browser session at consent, then each upstream refresh).
	CheckedAt time.Time `json:"checked"`
	// Upstream is the identity provider's refresh token; empty when the
	// provider issued none.
	Upstream string `json:"upstream,omitempty"`
}

// legacyMarker is the single-use marker value of codes and refresh tokens
// issued before family state existed (a rolling upgrade).
var legacyMarker = []byte{1}

// newFamily starts the state of a family at consent.
func (s *Server) newFamily(ctx context.Context) familyState {
	now := s.now()
	st := familyState{EndsAt: now.Add(s.opts.RefreshMaxLifetime), CheckedAt: now}
	var ends time.Time
	if s.opts.Logins != nil {
		var ok bool
		st.Upstream, ends, ok = s.opts.Logins.UpstreamLogin(ctx)
		if !ok {
			st.Upstream = ""
		}
	}
	if st.Upstream == "" || s.opts.Upstream == nil {
		// Nothing to recheck the user with: live no longer than the browser
		// session would have.
		st.Upstream = ""
		if ends.IsZero() {
			ends = now.Add(s.opts.SessionTTL)
		}
		st.EndsAt = minTime(st.EndsAt, ends)
	}
	return st
}

// newCredential returns a fresh code or refresh token and the sealed family
// state to store as its single-use marker. The credential is an encoded
// session ticket: its key opens the marker, and only the client has it.
func (s *Server) newCredential(st familyState) (string, []byte, error) {
	t, err := s.codec.NewTicket()
	if err != nil {
		return "", nil, fmt.Errorf("oauth: new credential: %w", err)
	}
	plain, err := json.Marshal(st)
	if err != nil {
		return "", nil, fmt.Errorf("oauth: encode family state: %w", err)
	}
	sealed, err := t.Seal(plain)
	if err != nil {
		return "", nil, fmt.Errorf("oauth: seal family state: %w", err)
	}
	return s.codec.Encode(t), sealed, nil
}

// errUnsealable means a credential's marker does not open with its key.
var errUnsealable = errors.New("oauth: family state does not open with the credential")

// openFamily decrypts the family state in a spent credential's marker. A
// legacy marker yields a state that lets the family live at most one more
// browser session, without upstream rechecks.
func (s *Server) openFamily(credential string, marker []byte, grantExpires time.Time) (familyState, error) {
	if slices.Equal(marker, legacyMarker) {
		return familyState{EndsAt: minTime(grantExpires, s.now().Add(s.opts.SessionTTL)), CheckedAt: s.now()}, nil
	}
	t, err := s.codec.Decode(credential)
	if err != nil {
		return familyState{}, errUnsealable
	}
	plain, err := t.Open(marker)
	if err != nil {
		return familyState{}, errUnsealable
	}
	var st familyState
	if err := json.Unmarshal(plain, &st); err != nil {
		return familyState{}, errUnsealable
	}
	return st, nil
}

// recheck re-establishes the user upstream when the family's last check is
// older than the recheck interval, and returns the identity to issue to.
// A *tokenError ends (or, when temporary, pauses) the refresh.
func (s *Server) recheck(ctx context.Context, st *familyState, id *identity.Identity, clientID string) (*identity.Identity, error) {
	if id == nil {
		return nil, errors.New("oauth: grant has no identity")
	}
	now := s.now()
	if st.Upstream == "" || s.opts.Upstream == nil || now.Sub(st.CheckedAt) < s.opts.UpstreamRecheck {
		return id, nil
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), upstreamTimeout)
	defer cancel()
	tokens, err := s.opts.Upstream.Refresh(uctx, st.Upstream)
	log := s.logFor(ctx).With(zap.String("client_id", clientID))
	switch {
	case errors.Is(err, oidc.ErrInvalidGrant):
		log.Info("oauth: identity provider refused the family's upstream refresh token; ending the family")
		return nil, grantErr("the identity provider no longer accepts this login")
	case err == nil && tokens == nil:
		err = errors.New("oauth: identity provider returned no tokens")
		fallthrough
	case err != nil:
		log.Warn("oauth: identity provider unavailable for an upstream recheck; the client may retry", zap.Error(err))
		return nil, errUpstreamDown
	}
	if tokens.Identity.Subject != "" && tokens.Identity.Subject != id.Subject {
		// A provider must never do this; do not let the family change hands.
		log.Error("oauth: upstream refresh returned another subject; ending the family")
		return nil, grantErr("the identity provider returned another user")
	}
	fresh := *id
	if tokens.Identity.Subject != "" {
		fresh = identity.Refreshed(*id, tokens.Identity)
	}
	if tokens.RefreshToken != "" {
		st.Upstream = tokens.RefreshToken
	}
	st.CheckedAt = now
	return &fresh, nil
}

// errUpstreamDown answers a refresh whose upstream recheck could not reach
// the provider: temporary, the refresh token stays usable.
var errUpstreamDown = &tokenError{http.StatusServiceUnavailable, errTemporarilyUnavailable,
	"the identity provider is temporarily unavailable; retry with the same refresh token"}

// authorize applies the authorization rules and required scopes to a
// refresh. The error text is safe to show the client.
func (s *Server) authorize(id *identity.Identity, granted []string) error {
	if !subset(s.opts.RequiredScopes, granted) {
		return errors.New("the grant lacks a scope this server now requires")
	}
	if s.opts.Authorizer == nil {
		return nil
	}
	// The rules read claims from Claims, as for the cookie session the
	// grant came from; a stored grant has only the kept ones.
	checked := *id
	checked.Claims = id.ExtraClaims
	return s.opts.Authorizer.Check(&checked)
}

// rearm puts a spent refresh token's marker back after a temporary failure
// that happened before anything was issued, so the client's retry works.
func (s *Server) rearm(ctx context.Context, key string, marker []byte, expires time.Time) error {
	ttl := expires.Sub(s.now())
	if ttl <= 0 {
		return nil
	}
	if err := s.store.PutOnce(ctx, key, marker, ttl); err != nil {
		return fmt.Errorf("oauth: re-arm refresh token: %w", err)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// defaultCodec is the credential codec when Options.Codec is nil: keyed by
// the signing keys, so replicas sharing them accept each other's codes and
// refresh tokens, or random with an ephemeral signing key.
func defaultCodec(signingKeys [][]byte) (*session.Codec, error) {
	h := sha256.New()
	h.Write([]byte("mcp-oidc-proxy oauth credential codec v1"))
	for _, k := range signingKeys {
		h.Write(k)
	}
	secret := h.Sum(nil)
	if len(signingKeys) == 0 {
		secret = []byte(randomToken())
	}
	return session.NewCodec(secret)
}
