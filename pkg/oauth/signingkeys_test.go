package oauth_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
)

func TestSigningKeys(t *testing.T) {
	pemKey := func() string {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	}
	one, two := pemKey(), pemKey()
	secret := strings.Repeat("s", 32)
	tests := []struct {
		name       string
		configured string
		secret     string
		wantKeys   int
		derived    bool
		wantErr    bool
	}{
		{"configured keys win over the secret", one + "\n" + two, secret, 2, false, false},
		{"configured without PEM", "not a key", secret, 0, false, true},
		{"derived from the cookie secret", "", secret, 1, true, false},
		{"neither: ephemeral", "", "", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, derived, err := oauth.SigningKeys(tt.configured, tt.secret)
			if (err != nil) != tt.wantErr || len(keys) != tt.wantKeys || derived != tt.derived {
				t.Fatalf("SigningKeys = %d keys, derived %v, err %v; want %d, %v, error %v", len(keys), derived, err, tt.wantKeys, tt.derived, tt.wantErr)
			}
			for _, k := range keys {
				block, _ := pem.Decode(k)
				if block == nil {
					t.Fatalf("key is not PEM: %q", k)
				}
			}
		})
	}
}

// Every replica sharing a cookie secret derives the same P-256 key, and
// another secret gives another key.
func TestDerivedSigningKeyIsDeterministic(t *testing.T) {
	derive := func(secret string) []byte {
		keys, derived, err := oauth.SigningKeys("", secret)
		if err != nil || !derived || len(keys) != 1 {
			t.Fatalf("SigningKeys(%q) = %d keys, %v, %v", secret, len(keys), derived, err)
		}
		block, _ := pem.Decode(keys[0])
		if block == nil {
			t.Fatal("derived key is not PEM")
		}
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil || k.Curve != elliptic.P256() {
			t.Fatalf("derived key: %v, %v; want a P-256 key", k, err)
		}
		return keys[0]
	}
	a := derive(strings.Repeat("a", 32))
	if !bytes.Equal(a, derive(strings.Repeat("a", 32))) {
		t.Fatal("the same secret derived two different keys")
	}
	if bytes.Equal(a, derive(strings.Repeat("b", 32))) {
		t.Fatal("two secrets derived the same key")
	}
}
