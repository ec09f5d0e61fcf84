package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// Store key prefixes. Every key starts with "oauth:"; keys derived from a
// secret (codes, refresh tokens, request ids) use its SHA-256, so a Redis
// dump never yields a usable credential.
const (
	keyClient      = "oauth:client:"      // client_id -> client
	keyCIMD        = "oauth:cimd:"        // sha(url) -> fetched metadata document
	keyRequest     = "oauth:req:"         // sha(request id) -> pending authorization request
	keyCode        = "oauth:code:"        // sha(code) -> code grant (kept after use to detect replay)
	keyCodeLive    = "oauth:code-live:"   // sha(code) -> single-use marker (PutOnce/TakeOnce)
	keyRefresh     = "oauth:rt:"          // sha(refresh token) -> refresh grant (kept after use)
	keyRefreshLive = "oauth:rt-live:"     // sha(refresh token) -> single-use marker
	keyFamilyDead  = "oauth:family-dead:" // family id -> revoked marker
	keyJTIRevoked  = "oauth:jti-revoked:" // jti -> revoked access token marker
	keyConsent     = "oauth:consent:"     // sha(sub) ":" sha(client_id) -> consent
)

// randomToken returns 256 random bits, base64url encoded.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashOf is the storage form of a secret.
func hashOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// equalHash compares a secret with a stored hash in constant time.
func equalHash(secret, stored string) bool {
	return subtle.ConstantTimeCompare([]byte(hashOf(secret)), []byte(stored)) == 1
}

func (s *Server) putJSON(ctx context.Context, key string, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("oauth: encode %T: %w", v, err)
	}
	if err := s.store.Put(ctx, key, b, ttl); err != nil {
		return fmt.Errorf("oauth: store %T: %w", v, err)
	}
	return nil
}

// exists reports whether a marker key (a revoked jti, a dead family) is set.
// A store error is returned, never taken as "absent".
func (s *Server) exists(ctx context.Context, key string) (bool, error) {
	_, err := s.store.Get(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, session.ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// getJSON reads key into v. session.ErrNotFound is returned wrapped, so
// callers check it with errors.Is.
func (s *Server) getJSON(ctx context.Context, key string, v any) error {
	b, err := s.store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("oauth: load %T: %w", v, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("oauth: decode %T: %w", v, err)
	}
	return nil
}
