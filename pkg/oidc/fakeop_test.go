package oidc_test

// Error branches the real provider cannot produce (forged or broken ID
// tokens, lying userinfo, odd claim shapes), driven by a tiny fake OP.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
)

const fakeKeyID = "k1"

// fakeOP serves discovery, JWKS, a token endpoint and userinfo. Tests edit
// its fields before the request they affect.
type fakeOP struct {
	t      *testing.T
	srv    *httptest.Server
	signer *ecdsa.PrivateKey

	mu sync.Mutex
	// discovery is the discovery document (issuer etc. filled in).
	discovery map[string]any
	// idClaims are the ID token claims; sign turns them into a token.
	idClaims map[string]any
	sign     func(t *testing.T, claims map[string]any) string
	// tokenStatus/tokenBody override the token response when non-zero.
	tokenStatus int
	tokenBody   map[string]any
	// omitIDToken / omitRefreshToken drop those from the token response.
	omitIDToken      bool
	omitRefreshToken bool
	userinfo         map[string]any
}

func newFakeOP(t *testing.T) *fakeOP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeOP{t: t, signer: key}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	iss := f.srv.URL
	f.discovery = map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"jwks_uri":                              iss + "/keys",
		"userinfo_endpoint":                     iss + "/userinfo",
		"id_token_signing_alg_values_supported": []string{"ES256"},
	}
	f.idClaims = map[string]any{
		"iss": iss, "sub": "u1", "aud": clientID, "nonce": "n",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		"email": "u1@example.com", "email_verified": true, "name": "User One",
		"preferred_username": "u1", "groups": []string{"g1", "g2"},
	}
	f.sign = signES256(key, fakeKeyID)
	f.userinfo = map[string]any{"sub": "u1", "email": "u1@example.com"}
	return f
}

func signES256(key *ecdsa.PrivateKey, kid string) func(t *testing.T, claims map[string]any) string {
	return func(t *testing.T, claims map[string]any) string {
		return signWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: key}, kid, claims)
	}
}

func signWith(t *testing.T, key jose.SigningKey, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned builds an "alg":"none" token, which no verifier may accept.
func unsigned(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

func (f *fakeOP) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		_ = enc.Encode(f.discovery)
	case "/keys":
		_ = enc.Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: &f.signer.PublicKey, KeyID: fakeKeyID, Algorithm: "ES256", Use: "sig",
		}}})
	case "/token":
		if f.tokenStatus != 0 {
			w.WriteHeader(f.tokenStatus)
			_ = enc.Encode(f.tokenBody)
			return
		}
		body := map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 60, "refresh_token": "rt2"}
		if !f.omitIDToken {
			body["id_token"] = f.sign(f.t, f.idClaims)
		}
		if f.omitRefreshToken {
			delete(body, "refresh_token")
		}
		_ = enc.Encode(body)
	case "/userinfo":
		if r.Header.Get("Authorization") != "Bearer at" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = enc.Encode(f.userinfo)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeOP) rp(t *testing.T, opts oidc.Options) *oidc.RelyingParty {
	t.Helper()
	opts.Issuer = f.srv.URL
	rp := newRP(t, opts)
	if err := rp.Discover(context.Background()); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return rp
}

func TestExchangeVerification(t *testing.T) {
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		opts        oidc.Options
		edit        func(f *fakeOP)
		wantErr     error // nil: success
		wantAnyErr  bool  // an error that is neither sentinel
		wantGroups  []string
		wantVerfied bool
	}{
		{name: "valid", wantGroups: []string{"g1", "g2"}, wantVerfied: true},
		{name: "wrong audience", edit: func(f *fakeOP) { f.idClaims["aud"] = "someone-else" }, wantErr: oidc.ErrVerification},
		{name: "expired", edit: func(f *fakeOP) { f.idClaims["exp"] = time.Now().Add(-time.Minute).Unix() }, wantErr: oidc.ErrVerification},
		{name: "wrong issuer", edit: func(f *fakeOP) { f.idClaims["iss"] = "https://evil.example.com" }, wantErr: oidc.ErrVerification},
		{name: "alg none", edit: func(f *fakeOP) { f.sign = unsigned }, wantErr: oidc.ErrVerification},
		{name: "alg none advertised", edit: func(f *fakeOP) {
			f.discovery["id_token_signing_alg_values_supported"] = []string{"none"}
			f.sign = unsigned
		}, wantErr: oidc.ErrVerification},
		{name: "HS256 with client secret", edit: func(f *fakeOP) {
			f.discovery["id_token_signing_alg_values_supported"] = []string{"HS256", "ES256"}
			f.sign = func(t *testing.T, c map[string]any) string {
				return signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: []byte(clientSecret + "-padding-to-32-bytes")}, fakeKeyID, c)
			}
		}, wantErr: oidc.ErrVerification},
		{name: "signed by another key", edit: func(f *fakeOP) { f.sign = signES256(otherKey, fakeKeyID) }, wantErr: oidc.ErrVerification},
		{name: "nonce missing", edit: func(f *fakeOP) { delete(f.idClaims, "nonce") }, wantErr: oidc.ErrVerification},
		{name: "no sub", edit: func(f *fakeOP) { delete(f.idClaims, "sub") }, wantErr: oidc.ErrVerification},
		{name: "no id_token", edit: func(f *fakeOP) { f.omitIDToken = true }, wantAnyErr: true},
		{name: "userinfo sub mismatch", opts: oidc.Options{UseUserInfo: true}, edit: func(f *fakeOP) { f.userinfo["sub"] = "u2" }, wantErr: oidc.ErrVerification},
		{name: "userinfo overrides groups", opts: oidc.Options{UseUserInfo: true}, edit: func(f *fakeOP) {
			f.userinfo["groups"] = []string{"from-userinfo"}
		}, wantGroups: []string{"from-userinfo"}, wantVerfied: true},
		{name: "groups as string", edit: func(f *fakeOP) { f.idClaims["groups"] = "solo" }, wantGroups: []string{"solo"}, wantVerfied: true},
		{name: "groups of other types ignored", edit: func(f *fakeOP) { f.idClaims["groups"] = []any{"a", 7, nil, "b"} }, wantGroups: []string{"a", "b"}, wantVerfied: true},
		{name: "groups object ignored", edit: func(f *fakeOP) { f.idClaims["groups"] = map[string]any{"x": 1} }, wantVerfied: true},
		{name: "custom groups claim", opts: oidc.Options{GroupsClaim: "roles"}, edit: func(f *fakeOP) { f.idClaims["roles"] = []string{"r"} }, wantGroups: []string{"r"}, wantVerfied: true},
		{name: "email_verified as string", edit: func(f *fakeOP) { f.idClaims["email_verified"] = "true" }, wantGroups: []string{"g1", "g2"}, wantVerfied: true},
		{name: "token endpoint invalid_grant", edit: func(f *fakeOP) {
			f.tokenStatus, f.tokenBody = http.StatusBadRequest, map[string]any{"error": "invalid_grant"}
		}, wantErr: oidc.ErrInvalidGrant},
		{name: "token endpoint server error", edit: func(f *fakeOP) {
			f.tokenStatus, f.tokenBody = http.StatusInternalServerError, map[string]any{"error": "server_error"}
		}, wantAnyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOP(t)
			if tt.edit != nil {
				tt.edit(f)
			}
			rp := f.rp(t, tt.opts)
			tok, err := rp.Exchange(context.Background(), "code", "verifier-verifier-verifier-verifier-verifier", "n", redirectURL)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.wantAnyErr:
				if err == nil || errors.Is(err, oidc.ErrVerification) || errors.Is(err, oidc.ErrInvalidGrant) {
					t.Fatalf("err = %v, want a plain error", err)
				}
			default:
				if err != nil {
					t.Fatalf("Exchange: %v", err)
				}
				if tok.Identity.Subject != "u1" || tok.Identity.Email != "u1@example.com" ||
					tok.Identity.EmailVerified != tt.wantVerfied || !slices.Equal(tok.Identity.Groups, tt.wantGroups) {
					t.Fatalf("identity = %+v", tok.Identity)
				}
			}
		})
	}
}

func TestRefreshResponses(t *testing.T) {
	tests := []struct {
		name        string
		edit        func(f *fakeOP)
		wantErr     error
		wantAnyErr  bool
		wantRefresh string
		wantSubject string
	}{
		{name: "rotated with ID token", wantRefresh: "rt2", wantSubject: "u1"},
		{name: "no new refresh token keeps the old one", edit: func(f *fakeOP) { f.omitRefreshToken = true }, wantRefresh: "rt1", wantSubject: "u1"},
		{name: "no ID token leaves identity to the caller", edit: func(f *fakeOP) { f.omitIDToken = true }, wantRefresh: "rt2"},
		{name: "refreshed ID token without nonce is fine", edit: func(f *fakeOP) { delete(f.idClaims, "nonce") }, wantRefresh: "rt2", wantSubject: "u1"},
		{name: "refreshed ID token for another audience", edit: func(f *fakeOP) { f.idClaims["aud"] = "x" }, wantErr: oidc.ErrVerification},
		{name: "invalid_grant", edit: func(f *fakeOP) {
			f.tokenStatus, f.tokenBody = http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": "revoked"}
		}, wantErr: oidc.ErrInvalidGrant},
		{name: "server error is temporary", edit: func(f *fakeOP) {
			f.tokenStatus, f.tokenBody = http.StatusServiceUnavailable, map[string]any{"error": "temporarily_unavailable"}
		}, wantAnyErr: true},
		{name: "invalid_client is not invalid_grant", edit: func(f *fakeOP) {
			f.tokenStatus, f.tokenBody = http.StatusUnauthorized, map[string]any{"error": "invalid_client"}
		}, wantAnyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOP(t)
			if tt.edit != nil {
				tt.edit(f)
			}
			tok, err := f.rp(t, oidc.Options{}).Refresh(context.Background(), "rt1")
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.wantAnyErr:
				if err == nil || errors.Is(err, oidc.ErrInvalidGrant) {
					t.Fatalf("err = %v, want a temporary error", err)
				}
			default:
				if err != nil {
					t.Fatalf("Refresh: %v", err)
				}
				if tok.RefreshToken != tt.wantRefresh || tok.Identity.Subject != tt.wantSubject || tok.AccessToken != "at" {
					t.Fatalf("tokens: refresh=%q subject=%q", tok.RefreshToken, tok.Identity.Subject)
				}
				if (tok.IDToken == "") != (tt.wantSubject == "") {
					t.Fatalf("IDToken present=%t, want %t", tok.IDToken != "", tt.wantSubject != "")
				}
			}
		})
	}
}

func TestDiscoveryDocumentChecks(t *testing.T) {
	tests := []struct {
		name       string
		opts       oidc.Options
		edit       func(f *fakeOP)
		wantErr    bool
		wantLogout bool
	}{
		{name: "no end_session_endpoint", wantLogout: false},
		{name: "end_session_endpoint", edit: func(f *fakeOP) { f.discovery["end_session_endpoint"] = f.srv.URL + "/logout?x=1" }, wantLogout: true},
		{name: "userinfo required but absent", opts: oidc.Options{UseUserInfo: true}, edit: func(f *fakeOP) { delete(f.discovery, "userinfo_endpoint") }, wantErr: true},
		{name: "no jwks_uri", edit: func(f *fakeOP) { delete(f.discovery, "jwks_uri") }, wantErr: true},
		{name: "issuer mismatch", edit: func(f *fakeOP) { f.discovery["issuer"] = "https://other.example.com" }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOP(t)
			if tt.edit != nil {
				tt.edit(f)
			}
			opts := tt.opts
			opts.Issuer = f.srv.URL
			rp := newRP(t, opts)
			err := rp.Discover(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Discover = %v, want error %t", err, tt.wantErr)
			}
			if (rp.Ready() == nil) == tt.wantErr {
				t.Fatalf("Ready = %v after Discover = %v", rp.Ready(), err)
			}
			if tt.wantErr {
				return
			}
			u, ok := rp.EndSessionURL("hint", "", "")
			if ok != tt.wantLogout {
				t.Fatalf("EndSessionURL ok = %t, want %t", ok, tt.wantLogout)
			}
			if ok && u != f.srv.URL+"/logout?client_id="+clientID+"&id_token_hint=hint&x=1" {
				t.Fatalf("EndSessionURL = %s", u)
			}
		})
	}
}

func TestSkipIssuerCheckVerifiesAgainstDiscoveredIssuer(t *testing.T) {
	f := newFakeOP(t)
	const discovered = "https://login.example.com/tenant/v2.0"
	f.discovery["issuer"] = discovered
	f.idClaims["iss"] = discovered
	rp := f.rp(t, oidc.Options{SkipIssuerCheck: true})
	if _, err := rp.Exchange(context.Background(), "c", "v", "n", redirectURL); err != nil {
		t.Fatalf("Exchange with discovered issuer: %v", err)
	}
	f.mu.Lock()
	f.idClaims["iss"] = f.srv.URL // the configured one is not what the provider said
	f.mu.Unlock()
	if _, err := rp.Exchange(context.Background(), "c", "v", "n", redirectURL); !errors.Is(err, oidc.ErrVerification) {
		t.Fatalf("Exchange with configured issuer: %v, want ErrVerification", err)
	}
}

func TestUserinfoEmailVerification(t *testing.T) {
	tests := []struct {
		name     string
		userinfo map[string]any
		want     bool
	}{
		{"same email, unstated", map[string]any{"sub": "u1", "email": "u1@example.com"}, true},
		{"same email, stated false", map[string]any{"sub": "u1", "email": "u1@example.com", "email_verified": false}, false},
		{"other email, unstated", map[string]any{"sub": "u1", "email": "new@example.com"}, false},
		{"other email, stated", map[string]any{"sub": "u1", "email": "new@example.com", "email_verified": "true"}, true},
		{"no email keeps the ID token's", map[string]any{"sub": "u1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOP(t)
			f.userinfo = tt.userinfo
			tok, err := f.rp(t, oidc.Options{UseUserInfo: true}).Exchange(context.Background(), "c", "v", "n", redirectURL)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Identity.EmailVerified != tt.want {
				t.Fatalf("EmailVerified = %t, want %t (identity %+v)", tok.Identity.EmailVerified, tt.want, tok.Identity)
			}
		})
	}
}

// TestDiscoverToleratesTrailingSlash covers providers whose issuer ends in
// "/" (Auth0) configured without it, or through a discovery URL (which loses
// it), and the reverse. ID tokens must then carry the provider's spelling.
func TestDiscoverToleratesTrailingSlash(t *testing.T) {
	tests := []struct {
		name       string
		provider   func(base string) string // the discovery document's issuer
		configured func(base string) string
	}{
		{"provider slash, configured without", func(b string) string { return b + "/" }, func(b string) string { return b }},
		{"provider slash, discovery URL", func(b string) string { return b + "/" }, func(b string) string { return b + "/.well-known/openid-configuration" }},
		{"provider without, configured slash", func(b string) string { return b }, func(b string) string { return b + "/" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOP(t)
			iss := tt.provider(f.srv.URL)
			f.discovery["issuer"] = iss
			f.idClaims["iss"] = iss
			rp := newRP(t, oidc.Options{Issuer: tt.configured(f.srv.URL)})
			if got := rp.TokenIssuer(); got != rp.Issuer() {
				t.Fatalf("TokenIssuer before discovery = %q, want the configured %q", got, rp.Issuer())
			}
			if err := rp.Discover(context.Background()); err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if got := rp.TokenIssuer(); got != iss {
				t.Fatalf("TokenIssuer = %q, want the provider's spelling %q (bearer tokens carry it)", got, iss)
			}
			if _, err := rp.Exchange(context.Background(), "c", "v", "n", redirectURL); err != nil {
				t.Fatalf("Exchange with the provider's issuer: %v", err)
			}
			f.mu.Lock()
			f.idClaims["iss"] = tt.configured(f.srv.URL)
			f.mu.Unlock()
			if _, err := rp.Exchange(context.Background(), "c", "v", "n", redirectURL); !errors.Is(err, oidc.ErrVerification) {
				t.Fatalf("Exchange with another spelling of the issuer: %v, want ErrVerification", err)
			}
		})
	}
}
