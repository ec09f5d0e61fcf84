package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/httpjson"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/ratelimit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// refreshGrant is what a refresh token stands for. Like codeGrant it stays
// after use (until it would have expired) so reuse is recognised, with a
// separate single-use marker for redeemability.
type refreshGrant struct {
	ClientID  string             `json:"client_id"`
	Resource  string             `json:"resource"`
	Scopes    []string           `json:"scopes"`
	Identity  *identity.Identity `json:"identity"`
	FamilyID  string             `json:"family"`
	ExpiresAt time.Time          `json:"exp"`
}

// tokenResponse is the RFC 6749 §5.1 answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// AccessClaims are the claims of an access token. Identity claims are
// included so the resource server needs no lookup.
type AccessClaims struct {
	Issuer            string   `json:"iss"`
	Subject           string   `json:"sub"`
	Audience          string   `json:"aud"`
	Expiry            int64    `json:"exp"`
	IssuedAt          int64    `json:"iat"`
	NotBefore         int64    `json:"nbf"`
	ID                string   `json:"jti"`
	ClientID          string   `json:"client_id"`
	Scope             string   `json:"scope,omitempty"`
	Email             string   `json:"email,omitempty"`
	EmailVerified     bool     `json:"email_verified,omitempty"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	// FamilyID names the refresh family (one authorization) the token was
	// issued in, so revoking the family denies every access token it ever
	// issued, including one a racing refresh issued while it was revoked.
	// It is a random value with no meaning outside this server.
	FamilyID string `json:"fid,omitempty"`
	// Ext carries the claims the browser login kept beyond the standard
	// ones (identity.Identity.ExtraClaims, the names in policy.claims,
	// bounded by oidc.MaxExtraClaimsBytes), so rules see the same claims
	// for a façade token as for the cookie session it came from. They sit
	// under one private claim, never at the top level, so an identity
	// provider's claim can never stand in for iss, aud, client_id or scope;
	// AccessTokenValidator lifts them into Identity.Claims.
	Ext map[string]any `json:"ext,omitempty"`
}

// ExtClaim is the access token claim holding AccessClaims.Ext.
const ExtClaim = "ext"

// tokenError is an RFC 6749 §5.2 failure of the token endpoint.
type tokenError struct {
	status      int
	code        string
	description string
}

func (e *tokenError) Error() string { return e.code + ": " + e.description }

func grantErr(desc string) *tokenError {
	return &tokenError{http.StatusBadRequest, errInvalidGrant, desc}
}

// parsePostForm accepts only POSTed, size-bounded form bodies (the token and
// revocation endpoints) and answers the client itself otherwise.
func parsePostForm(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeOAuthError(w, http.StatusMethodNotAllowed, errInvalidRequest, "method not allowed")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, errInvalidRequest, "malformed form body")
		return false
	}
	return true
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if !parsePostForm(w, r) {
		return
	}
	for _, p := range []string{"grant_type", "code", "code_verifier", "redirect_uri", "refresh_token", "client_id", "scope"} {
		if len(r.PostForm[p]) > 1 {
			writeOAuthError(w, http.StatusBadRequest, errInvalidRequest, "parameter "+p+" repeated")
			return
		}
	}
	grant := r.PostForm.Get("grant_type")
	if grant != grantAuthCode && grant != grantRefresh {
		writeOAuthError(w, http.StatusBadRequest, errUnsupportedGrantType, "grant_type must be authorization_code or refresh_token")
		return
	}
	client, err := s.authenticateClient(r)
	if err != nil {
		s.clientAuthFailed(w, r, err)
		return
	}
	if !client.allows(grant) {
		writeOAuthError(w, http.StatusBadRequest, errUnauthorizedClient, "client is not registered for this grant type")
		return
	}
	var resp *tokenResponse
	if grant == grantAuthCode {
		resp, err = s.redeemCode(r, client)
	} else {
		resp, err = s.redeemRefresh(r, client)
	}
	var te *tokenError
	switch {
	case errors.As(err, &te) && te.status == http.StatusServiceUnavailable:
		s.logFor(r.Context()).Warn("oauth: token request deferred", zap.String("client_id", client.ID),
			zap.String("grant_type", grant), zap.String("reason", te.description))
		w.Header().Set("Retry-After", "5")
		writeOAuthError(w, te.status, te.code, te.description)
		return
	case errors.As(err, &te):
		s.logFor(r.Context()).Info("oauth: token request refused", zap.String("client_id", client.ID),
			zap.String("grant_type", grant), zap.String("error", te.code), zap.String("reason", te.description))
		writeOAuthError(w, te.status, te.code, te.description)
		return
	case err != nil:
		s.storeErr(w, r, "token", err)
		return
	}
	s.touchClient(r.Context(), client)
	httpjson.Write(w, http.StatusOK, resp)
}

func (s *Server) clientAuthFailed(w http.ResponseWriter, r *http.Request, err error) {
	if fl := (*fetchLimitedError)(nil); errors.As(err, &fl) {
		ratelimit.SetRetryAfter(w.Header(), fl.wait)
		writeOAuthError(w, http.StatusTooManyRequests, errSlowDown, "too many new client metadata documents from your address; retry later")
		return
	}
	if !errors.Is(err, errClientAuth) {
		s.storeErr(w, r, "client authentication", err)
		return
	}
	if _, _, basic := r.BasicAuth(); basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth"`)
	}
	writeOAuthError(w, http.StatusUnauthorized, errInvalidClient, "client authentication failed")
}

// verifyPKCE checks BASE64URL(SHA256(verifier)) == challenge in constant
// time (RFC 7636 §4.6), after checking the verifier's syntax.
func verifyPKCE(verifier, challenge string) bool {
	if !validPKCEChallenge(verifier) { // same alphabet and 43..128 length rule
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

func (s *Server) redeemCode(r *http.Request, client *Client) (*tokenResponse, error) {
	ctx := r.Context()
	code := r.PostForm.Get("code")
	if code == "" {
		return nil, &tokenError{http.StatusBadRequest, errInvalidRequest, "code is required"}
	}
	h := hashOf(code)
	var g codeGrant
	if err := s.getJSON(ctx, keyCode+h, &g); err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return nil, grantErr("unknown or expired code")
		}
		return nil, err
	}
	if g.ClientID != client.ID {
		return nil, grantErr("code was issued to another client")
	}
	if !s.now().Before(g.ExpiresAt) {
		return nil, grantErr("code expired")
	}
	// Check the request before spending the code (as the refresh path
	// does): a wrong verifier or redirect_uri must not cost the client its
	// code, and a caller without the verifier cannot burn it either.
	if got := r.PostForm.Get("redirect_uri"); got != g.RedirectURI && !(got == "" && g.RedirectURIOmitted) {
		return nil, grantErr("redirect_uri does not match the authorization request")
	}
	if !verifyPKCE(r.PostForm.Get("code_verifier"), g.CodeChallenge) {
		return nil, grantErr("PKCE verification failed")
	}
	if res, ok := s.pickResource(r, r.PostForm["resource"], g.Resource); !ok || res != g.Resource {
		return nil, &tokenError{http.StatusBadRequest, errInvalidTarget, "resource does not match the authorization request"}
	}
	marker, err := s.store.TakeOnce(ctx, keyCodeLive+h)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			// A replay: the first redemption may have been by an attacker or
			// by the client; either way nothing issued from it is trusted.
			s.logFor(r.Context()).Warn("oauth: authorization code replayed; revoking its tokens", zap.String("client_id", client.ID))
			if err := s.revokeFamily(ctx, g.FamilyID); err != nil {
				return nil, err
			}
			return nil, grantErr("code already used")
		}
		return nil, err
	}
	st, err := s.openFamily(code, marker, s.now().Add(s.opts.RefreshTokenTTL))
	if err != nil {
		return nil, s.endFamily(ctx, r, client, g.FamilyID, err, grantErr("code unusable"))
	}
	return s.issue(ctx, r, client, g.Identity, g.Resource, g.Scopes, g.FamilyID, st)
}

func (s *Server) redeemRefresh(r *http.Request, client *Client) (*tokenResponse, error) {
	ctx := r.Context()
	tok := r.PostForm.Get("refresh_token")
	if tok == "" {
		return nil, &tokenError{http.StatusBadRequest, errInvalidRequest, "refresh_token is required"}
	}
	h := hashOf(tok)
	var g refreshGrant
	if err := s.getJSON(ctx, keyRefresh+h, &g); err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return nil, grantErr("unknown or expired refresh token")
		}
		return nil, err
	}
	if g.ClientID != client.ID {
		return nil, grantErr("refresh token was issued to another client")
	}
	if !s.now().Before(g.ExpiresAt) {
		// ExpiresAt never passes the family's absolute end.
		return nil, grantErr("refresh token expired")
	}
	if dead, err := s.familyRevoked(ctx, g.FamilyID); err != nil {
		return nil, err
	} else if dead {
		return nil, grantErr("refresh token revoked")
	}
	// Validate the request before spending the token, so a bad request
	// does not cost the client its grant.
	resource, ok := s.pickResource(r, r.PostForm["resource"], g.Resource)
	if !ok {
		return nil, &tokenError{http.StatusBadRequest, errInvalidTarget, "resource may not be widened on refresh"}
	}
	scopes := g.Scopes
	if sc := r.PostForm.Get("scope"); strings.TrimSpace(sc) != "" {
		// Scopes this server does not offer are dropped, as at /authorize:
		// clients repeat their original request on refresh (mcp-remote
		// sends "openid email profile", which /authorize narrowed away),
		// and refusing it would end their session at the first refresh.
		// Only an offered scope outside the grant widens it.
		req := s.narrowScopes(sc) // de-duplicated, in request order
		if !subset(req, g.Scopes) {
			return nil, &tokenError{http.StatusBadRequest, errInvalidScope, "scope may not be widened on refresh"}
		}
		scopes = req
	}
	marker, err := s.store.TakeOnce(ctx, keyRefreshLive+h)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			s.logFor(r.Context()).Warn("oauth: rotated refresh token reused; revoking its family", zap.String("client_id", client.ID))
			if err := s.revokeFamily(ctx, g.FamilyID); err != nil {
				return nil, err
			}
			return nil, grantErr("refresh token already used")
		}
		return nil, err
	}
	// Past this point the old token is spent; a failure below costs the
	// client a new login, never a second use (except a temporary upstream
	// failure, which puts the token back).
	st, err := s.openFamily(tok, marker, g.ExpiresAt)
	if err != nil {
		return nil, s.endFamily(ctx, r, client, g.FamilyID, err, grantErr("refresh token unusable"))
	}
	if !s.now().Before(st.EndsAt) {
		return nil, s.endFamily(ctx, r, client, g.FamilyID, nil, grantErr("refresh token family expired"))
	}
	id, err := s.recheck(ctx, &st, g.Identity, client.ID)
	if errors.Is(err, errUpstreamDown) {
		if rerr := s.rearm(ctx, keyRefreshLive+h, marker, g.ExpiresAt); rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	if err != nil {
		return nil, s.endFamily(ctx, r, client, g.FamilyID, nil, err)
	}
	if err := s.authorize(id, g.Scopes); err != nil {
		return nil, s.endFamily(ctx, r, client, g.FamilyID, nil, grantErr("no longer authorized: "+err.Error()))
	}
	return s.issue(ctx, r, client, id, resource, scopes, g.FamilyID, st)
}

// endFamily revokes a family whose refresh cannot go on and returns answer
// (or the store error that kept it from being revoked).
func (s *Server) endFamily(ctx context.Context, r *http.Request, client *Client, family string, cause, answer error) error {
	log := s.logFor(r.Context())
	if cause != nil {
		log = log.With(zap.Error(cause))
	}
	var te *tokenError
	if errors.As(answer, &te) {
		log = log.With(zap.String("reason", te.description))
	}
	log.Info("oauth: refresh family ended", zap.String("client_id", client.ID))
	if err := s.revokeFamily(ctx, family); err != nil {
		return err
	}
	return answer
}

// issue signs an access token and, when the client may refresh, stores a
// new refresh token in the family. st is the family's state, carried into
// the new refresh token.
func (s *Server) issue(ctx context.Context, r *http.Request, client *Client, id *identity.Identity, resource string, scopes []string, family string, st familyState) (*tokenResponse, error) {
	if id == nil {
		return nil, errors.New("oauth: grant has no identity")
	}
	now := s.now()
	exp := now.Add(s.opts.AccessTokenTTL)
	claims := AccessClaims{
		Issuer:            s.issuer(r),
		Subject:           id.Subject,
		Audience:          resource,
		Expiry:            exp.Unix(),
		IssuedAt:          now.Unix(),
		NotBefore:         now.Unix(),
		ID:                randomToken()[:32],
		ClientID:          client.ID,
		Scope:             strings.Join(scopes, " "),
		Email:             id.Email,
		EmailVerified:     id.EmailVerified,
		Name:              id.Name,
		PreferredUsername: id.Username,
		Groups:            id.Groups,
		FamilyID:          family,
		Ext:               id.ExtraClaims,
	}
	at, err := s.keys.signAccess(claims)
	if err != nil {
		return nil, err
	}
	resp := &tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   int64(s.opts.AccessTokenTTL / time.Second),
		Scope:       claims.Scope,
	}
	if !client.allows(grantRefresh) {
		return resp, nil
	}
	// Each refresh token lives refresh_token_ttl, but never past the
	// family's absolute end.
	rtExp := minTime(now.Add(s.opts.RefreshTokenTTL), st.EndsAt)
	ttl := rtExp.Sub(now)
	if ttl <= 0 {
		return resp, nil
	}
	rt, marker, err := s.newCredential(st)
	if err != nil {
		return nil, err
	}
	h := hashOf(rt)
	g := refreshGrant{ClientID: client.ID, Resource: resource, Scopes: scopes, Identity: id, FamilyID: family, ExpiresAt: rtExp}
	if err := s.putJSON(ctx, keyRefresh+h, g, ttl); err != nil {
		return nil, err
	}
	if err := s.store.PutOnce(ctx, keyRefreshLive+h, marker, ttl); err != nil {
		return nil, err
	}
	resp.RefreshToken = rt
	return resp, nil
}

// revokeFamily marks a refresh family dead: every refresh token in it fails
// from now on, and so does every access token it issued, because the
// resource server checks their fid claim against the same marker. The
// marker outlives every token of the family.
func (s *Server) revokeFamily(ctx context.Context, family string) error {
	ttl := max(s.opts.RefreshTokenTTL, s.opts.AccessTokenTTL) + time.Minute // verifiers' clock skew
	if err := s.store.Put(ctx, keyFamilyDead+family, []byte{1}, ttl); err != nil {
		return fmt.Errorf("oauth: revoke refresh family: %w", err)
	}
	if s.opts.Revoked != nil {
		// The bearer check only needs to outlive the family's access
		// tokens, the last of which a racing refresh may issue now.
		return s.opts.Revoked.Add(ctx, familyMember(family), s.now().Add(s.opts.AccessTokenTTL+time.Minute))
	}
	return nil
}

func (s *Server) familyRevoked(ctx context.Context, family string) (bool, error) {
	return s.exists(ctx, keyFamilyDead+family)
}
