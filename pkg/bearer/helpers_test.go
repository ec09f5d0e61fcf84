package bearer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

const (
	testIssuer   = "https://issuer.example"
	testResource = "https://mcp.example.com/mcp"
)

// keyPair is a signing key with its kid.
type keyPair struct {
	kid  string
	key  any // private key
	alg  jose.SignatureAlgorithm
	pub  jose.JSONWebKey
	priv jose.JSONWebKey
}

func newRSAKey(t testing.TB, kid string) keyPair {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{kid: kid, key: k, alg: jose.RS256,
		pub:  jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"},
		priv: jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}}
}

func newECKey(t *testing.T, kid string) keyPair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{kid: kid, key: k, alg: jose.ES256,
		pub:  jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"},
		priv: jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}}
}

// sign signs claims with kp, kid in the header.
func sign(t testing.TB, kp keyPair, claims map[string]any) string {
	t.Helper()
	return signTyp(t, kp, "JWT", claims)
}

// jwksServer serves a replaceable key set and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetches atomic.Int64
	down    atomic.Bool
}

func newJWKSServer(t testing.TB, keys ...jose.JSONWebKey) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		s.mu.Lock()
		set := jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), s.keys...)}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(keys ...jose.JSONWebKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

// claimsAt returns valid claims for the test issuer and resource at now.
func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss":   testIssuer,
		"sub":   "user-1",
		"aud":   []string{testResource},
		"exp":   now.Add(5 * time.Minute).Unix(),
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"scope": "mcp:tools mcp:read",
		"email": "u@example.com",
		"azp":   "client-1",
	}
}

// providerToken logs the demo user in at p with client "rp" and returns
// the token response.
func providerToken(t *testing.T, p *oidcprovider.Provider, scopes ...string) *oauth2.Token {
	t.Helper()
	ctx := context.Background()
	var d struct {
		AuthorizationURL string `json:"authorization_endpoint"`
		TokenURL         string `json:"token_endpoint"`
	}
	resp, err := http.Get(p.DiscoveryURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	cfg := &oauth2.Config{
		ClientID: "rp", ClientSecret: "rp-secret",
		Endpoint:    oauth2.Endpoint{AuthURL: d.AuthorizationURL, TokenURL: d.TokenURL},
		RedirectURL: "http://127.0.0.1:9/oauth2/callback",
		Scopes:      append([]string{"openid", "profile", "email"}, scopes...),
	}
	verifier := oauth2.GenerateVerifier()
	cb, err := p.Login(ctx, nil, cfg.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func rpClient() []oidcprovider.Client {
	return []oidcprovider.Client{{ID: "rp", Secret: "rp-secret", RedirectURIs: []string{"http://127.0.0.1:*/oauth2/callback"}}}
}
