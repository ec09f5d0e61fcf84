package session_test

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

// hmacCookie recomputes the documented cookie MAC independently of the
// codec: HMAC-SHA256 keyed with HKDF-SHA256(secret, info "mcp-oidc-proxy
// cookie mac v1").
func hmacCookie(t *testing.T, secret []byte, signed string) []byte {
	t.Helper()
	key, err := hkdf.Key(sha256.New, secret, nil, "mcp-oidc-proxy cookie mac v1", sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}
