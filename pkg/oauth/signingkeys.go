package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// SigningKeys returns the PEM keys for Options.SigningKeys: each PEM block
// of configured, or, without any, one key derived from secret (the cookie
// secret), so that every replica sharing that secret signs and accepts the
// same tokens without another secret to distribute. Rotating the secret
// then rotates the key as well. derived says the key came from secret (the
// caller tells the operator). With neither it returns no keys, and the
// server uses an ephemeral one (memory store, generated cookie secret).
func SigningKeys(configured, secret string) (keys [][]byte, derived bool, err error) {
	if configured != "" {
		rest := []byte(configured)
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			keys = append(keys, pem.EncodeToMemory(block))
		}
		if len(keys) == 0 {
			return nil, false, errors.New("oauth.signing_keys: no PEM blocks found")
		}
		return keys, false, nil
	}
	if secret == "" {
		return nil, false, nil
	}
	key, err := deriveP256(secret)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("encoding derived signing key: %w", err)
	}
	return [][]byte{pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})}, true, nil
}

// deriveP256 turns a secret into a P-256 private key deterministically.
func deriveP256(secret string) (*ecdsa.PrivateKey, error) {
	for counter := byte(0); counter < 16; counter++ {
		d, err := hkdf.Key(sha256.New, []byte(secret), []byte{counter}, "mcp-oidc-proxy oauth signing key v1", 32)
		if err != nil {
			return nil, fmt.Errorf("deriving signing key: %w", err)
		}
		if key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d); err == nil {
			return key, nil
		}
	}
	return nil, errors.New("deriving signing key: no valid scalar")
}
