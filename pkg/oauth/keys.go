package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/httpjson"
)

// AccessTokenType is the JOSE "typ" of the access tokens this server issues
// (RFC 9068). The resource server should require it (bearer.JWTOptions.Types),
// so that no other JWT signed with the same keys, such as the identity
// assertion handed to the MCP server, is accepted as an access token.
const AccessTokenType = "at+jwt"

// signingKey is one private key with its published identity.
type signingKey struct {
	kid string
	alg string
	key crypto.Signer
	// signer issues access tokens (typ at+jwt); jwtSigner everything else
	// (typ JWT). Both are built once: a jose.Signer is safe to reuse.
	signer    jose.Signer
	jwtSigner jose.Signer
}

// keySet holds the active signer and every key published for verification.
type keySet struct {
	active *signingKey
	all    []*signingKey
	// public is the published JWKS, built once: the keys never change
	// after loading, and the resource server reads it on every request.
	public *jose.JSONWebKeySet
}

func loadKeys(pems [][]byte) (*keySet, error) {
	ks := &keySet{}
	if len(pems) == 0 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("oauth: generate ephemeral key: %w", err)
		}
		sk, err := newSigningKey(k)
		if err != nil {
			return nil, err
		}
		ks.all = []*signingKey{sk}
	}
	for i, p := range pems {
		priv, err := parsePrivateKey(p)
		if err != nil {
			return nil, fmt.Errorf("oauth: signing key %d: %w", i, err)
		}
		sk, err := newSigningKey(priv)
		if err != nil {
			return nil, fmt.Errorf("oauth: signing key %d: %w", i, err)
		}
		ks.all = append(ks.all, sk)
	}
	ks.active = ks.all[0]
	ks.public = &jose.JSONWebKeySet{}
	for _, k := range ks.all {
		ks.public.Keys = append(ks.public.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"})
	}
	return ks, nil
}

func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported PKCS#8 key type %T", k)
		}
		return signer, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a PKCS#8, EC or PKCS#1 private key", block.Type)
}

func newSigningKey(k crypto.Signer) (*signingKey, error) {
	var alg jose.SignatureAlgorithm
	switch pk := k.Public().(type) {
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		default:
			return nil, errors.New("unsupported EC curve (want P-256 or P-384)")
		}
	case *rsa.PublicKey:
		if pk.N.BitLen() < 2048 {
			return nil, errors.New("RSA key shorter than 2048 bits")
		}
		alg = jose.RS256
	default:
		return nil, fmt.Errorf("unsupported key type %T", pk)
	}
	pub := jose.JSONWebKey{Key: k.Public()}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("key thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(thumb)
	sk := &signingKey{kid: kid, alg: string(alg), key: k}
	for typ, dst := range map[jose.ContentType]*jose.Signer{AccessTokenType: &sk.signer, "JWT": &sk.jwtSigner} {
		*dst, err = jose.NewSigner(
			jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(alg)}},
			(&jose.SignerOptions{}).WithType(typ),
		)
		if err != nil {
			return nil, fmt.Errorf("create signer: %w", err)
		}
	}
	return sk, nil
}

// jwks is the public half of every key. Callers must not modify it.
func (ks *keySet) jwks() *jose.JSONWebKeySet { return ks.public }

// PublicKeys returns the key set the resource server verifies access tokens
// with. It is the same set served at /oauth2/jwks, so an in-process resource
// server needs no HTTP round trip. It is shared: callers must not modify it.
func (s *Server) PublicKeys(context.Context) (*jose.JSONWebKeySet, error) {
	return s.keys.jwks(), nil
}

// JWKSHandler serves the public keys on their own, for deployments that
// only need them to verify the identity assertion (external mode).
func (s *Server) JWKSHandler() http.Handler { return cors(http.HandlerFunc(s.handleJWKS)) }

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		writeOAuthError(w, http.StatusMethodNotAllowed, errInvalidRequest, "method not allowed")
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpjson.Write(w, http.StatusOK, s.keys.jwks())
}

// Signer signs arbitrary claims with the active key. It exists for the
// optional identity assertion the proxy adds to forwarded requests, which the
// MCP server verifies against the same JWKS as access tokens.
type Signer struct {
	key *signingKey
}

// Signer returns the signer backed by the active signing key.
func (s *Server) Signer() *Signer { return &Signer{key: s.keys.active} }

// Sign returns a compact JWS (typ JWT) over claims.
func (g *Signer) Sign(claims map[string]any) (string, error) {
	tok, err := jwt.Signed(g.key.jwtSigner).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("oauth: sign claims: %w", err)
	}
	return tok, nil
}

// KID is the key ID of the signing key, published in the JWKS.
func (g *Signer) KID() string { return g.key.kid }

// signAccess signs access-token claims (typ at+jwt, RFC 9068).
func (ks *keySet) signAccess(claims any) (string, error) {
	tok, err := jwt.Signed(ks.active.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("oauth: sign access token: %w", err)
	}
	return tok, nil
}

// verify parses a token this server issued, checking only the signature
// (revocation must accept expired-but-valid tokens gracefully).
func (ks *keySet) verify(raw string, out any) error {
	algs := make([]jose.SignatureAlgorithm, 0, len(ks.all))
	for _, k := range ks.all {
		algs = append(algs, jose.SignatureAlgorithm(k.alg))
	}
	tok, err := jwt.ParseSigned(raw, algs)
	if err != nil {
		return fmt.Errorf("oauth: parse token: %w", err)
	}
	if len(tok.Headers) != 1 {
		return errors.New("oauth: token must have one signature")
	}
	for _, k := range ks.all {
		if k.kid == tok.Headers[0].KeyID {
			if err := tok.Claims(k.key.Public(), out); err != nil {
				return fmt.Errorf("oauth: verify token: %w", err)
			}
			return nil
		}
	}
	return errors.New("oauth: token signed by an unknown key")
}
