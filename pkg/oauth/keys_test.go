package oauth_test

import (
	"net/http"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

func TestEphemeralKeyAndSigner(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	m := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = m.Close() })
	s, err := oauth.New(oauth.Options{Store: m, BaseURL: func(*http.Request) string { return issuer }, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 1 {
		t.Fatalf("want one warning about the ephemeral key, got %d", logs.Len())
	}
	signer := s.Signer()
	var _ interface {
		Sign(map[string]any) (string, error)
		KID() string
	} = signer
	raw, err := signer.Sign(map[string]any{"sub": "alice", "aud": "upstream"})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := s.PublicKeys(t.Context())
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || tok.Headers[0].KeyID != signer.KID() {
		t.Fatalf("parse: %v kid=%v", err, tok)
	}
	var c map[string]any
	if err := tok.Claims(keys.Key(signer.KID())[0].Key, &c); err != nil || c["sub"] != "alice" {
		t.Fatalf("verify: %v %v", err, c)
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	m := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = m.Close() })
	for name, pem := range map[string]string{"not PEM": "hello", "garbage DER": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		_, err := oauth.New(oauth.Options{Store: m, BaseURL: func(*http.Request) string { return issuer }, SigningKeys: [][]byte{[]byte(pem)}})
		if err == nil {
			t.Errorf("%s: New accepted a bad key", name)
		}
	}
}
