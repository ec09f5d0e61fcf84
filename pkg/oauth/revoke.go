package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// handleRevoke implements RFC 7009: refresh tokens revoke their whole
// family, access tokens go on a denylist until they expire. Unknown tokens
// and tokens of other clients get 200, so the endpoint reveals nothing.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if !parsePostForm(w, r) {
		return
	}
	client, err := s.authenticateClient(r)
	if err != nil {
		s.clientAuthFailed(w, r, err)
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeOAuthError(w, http.StatusBadRequest, errInvalidRequest, "token is required")
		return
	}
	if err := s.revoke(r.Context(), client, tok); err != nil {
		s.storeErr(w, r, "revoke", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func (s *Server) revoke(ctx context.Context, client *Client, tok string) error {
	var g refreshGrant
	err := s.getJSON(ctx, keyRefresh+hashOf(tok), &g)
	switch {
	case err == nil:
		if g.ClientID != client.ID {
			return nil
		}
		s.logFor(ctx).Info("oauth: refresh token family revoked", zap.String("client_id", client.ID))
		return s.revokeFamily(ctx, g.FamilyID)
	case !errors.Is(err, session.ErrNotFound):
		return err
	}
	var claims AccessClaims
	if err := s.keys.verify(tok, &claims); err != nil {
		return nil // not ours: nothing to revoke
	}
	if claims.ClientID != client.ID || claims.ID == "" {
		return nil
	}
	s.logFor(ctx).Info("oauth: access token revoked", zap.String("client_id", client.ID))
	return s.denyJTI(ctx, claims.ID, time.Unix(claims.Expiry, 0))
}

// denyJTI puts an access token on the denylist until it expires anyway.
func (s *Server) denyJTI(ctx context.Context, jti string, exp time.Time) error {
	ttl := exp.Sub(s.now()) + time.Minute // cover verifiers' clock skew
	if ttl <= time.Minute {
		ttl = time.Minute
	}
	if err := s.store.Put(ctx, keyJTIRevoked+jti, []byte{1}, ttl); err != nil {
		return fmt.Errorf("oauth: deny access token: %w", err)
	}
	if s.opts.Revoked != nil {
		return s.opts.Revoked.Add(ctx, jtiMember(jti), s.now().Add(ttl))
	}
	return nil
}

// IsRevoked reports whether an access token from this server was revoked:
// directly (its jti) or with its refresh family (its fid claim). The
// resource server calls it after validating the token; both markers are
// checked in one store round trip, or none once the local RevokedSet
// (Options.Revoked) has loaded. A store error is returned as is, so the
// caller decides between failing open and closed.
func (s *Server) IsRevoked(ctx context.Context, jti, family string) (bool, error) {
	if s.opts.Revoked != nil {
		if revoked, known := s.opts.Revoked.Revoked(jti, family); known {
			return revoked, nil
		}
	}
	keys := make([]string, 0, 2)
	if jti != "" {
		keys = append(keys, keyJTIRevoked+jti)
	}
	if family != "" {
		keys = append(keys, keyFamilyDead+family)
	}
	revoked, err := s.store.AnyExists(ctx, keys...)
	if err != nil {
		return false, fmt.Errorf("oauth: check access token revocation: %w", err)
	}
	return revoked, nil
}
