package bearer_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// TestJWTAgainstRealProvider validates audience-bound JWT access tokens
// issued by the in-process zitadel OP, with keys discovered from its
// metadata.
func TestJWTAgainstRealProvider(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{Clients: rpClient(), AccessTokenAudience: []string{testResource}})
	tok := providerToken(t, p, "groups")
	if !bearer.LooksLikeJWT(tok.AccessToken) {
		t.Fatalf("provider issued an opaque access token")
	}

	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: p.Issuer(), Audiences: []string{testResource}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Validate(context.Background(), tok.AccessToken, bearer.Expectation{})
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	id := got.Identity
	if got.Subject != oidcprovider.DemoUserID || id.Subject != oidcprovider.DemoUserID || id.Email != oidcprovider.DemoEmail ||
		!id.EmailVerified || id.Method != bearer.Method || !slices.Equal(id.Groups, oidcprovider.DemoGroups()) {
		t.Fatalf("token = %+v", got)
	}
	if got.ClientID != "rp" || got.Issuer != p.Issuer() || !slices.Contains(got.Audience, testResource) || !slices.Contains(got.Scopes, "openid") {
		t.Fatalf("token = %+v", got)
	}
	if id.Claims["sub"] != oidcprovider.DemoUserID {
		t.Fatalf("identity claims = %v", id.Claims)
	}

	other, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: p.Issuer(), Audiences: []string{"https://other.example/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Validate(context.Background(), tok.AccessToken, bearer.Expectation{}); !errors.Is(err, bearer.ErrInvalidToken) || bearer.Reason(err) != "wrong audience" {
		t.Fatalf("token for another resource: err = %v", err)
	}
	explicit, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: p.Issuer(), JWKSURL: p.Issuer() + "/keys", Audiences: []string{testResource}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := explicit.Validate(context.Background(), tok.AccessToken, bearer.Expectation{}); err != nil {
		t.Fatalf("explicit JWKS URL: %v", err)
	}
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestJWTRejections: every check has a case that passes only if the check
// is there.
func TestJWTRejections(t *testing.T) {
	kp := newRSAKey(t, "k1")
	ec := newECKey(t, "e1")
	attacker := newRSAKey(t, "k1") // same kid, other key
	srv := newJWKSServer(t, kp.pub, ec.pub)
	clk := fakeclock.New(time.Now())
	now := clk.Now()
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{
		Issuer: testIssuer, JWKSURL: srv.URL, Audiences: []string{testResource}, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	with := func(mut func(c map[string]any)) map[string]any {
		c := claimsAt(now)
		mut(c)
		return c
	}
	pubDER := kp.pub.Key
	hmacWithPublicKey := func() string {
		// Key confusion: HS256 keyed with the RSA public key material.
		pem, _ := json.Marshal(pubDER)
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pem}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		obj, _ := s.Sign([]byte(fmt.Sprintf(`{"iss":%q,"sub":"x","aud":%q,"exp":%d}`, testIssuer, testResource, now.Add(time.Minute).Unix())))
		out, _ := obj.CompactSerialize()
		return out
	}
	tests := []struct {
		name   string
		token  string
		reason string // "" means valid
	}{
		{"valid RS256", sign(t, kp, claimsAt(now)), ""},
		{"valid ES256", sign(t, ec, claimsAt(now)), ""},
		{"alg none", b64(map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64(claimsAt(now)) + ".", "unsupported signing algorithm"},
		{"alg none with junk signature", b64(map[string]any{"alg": "none"}) + "." + b64(claimsAt(now)) + ".c2ln", "unsupported signing algorithm"},
		{"HS256 key confusion", hmacWithPublicKey(), "unsupported signing algorithm"},
		{"bad signature, known kid", sign(t, attacker, claimsAt(now)), "bad signature"},
		{"tampered payload", func() string {
			parts := strings.Split(sign(t, kp, claimsAt(now)), ".")
			return parts[0] + "." + b64(with(func(c map[string]any) { c["sub"] = "admin" })) + "." + parts[2]
		}(), "bad signature"},
		{"wrong issuer", sign(t, kp, with(func(c map[string]any) { c["iss"] = "https://evil.example" })), "wrong issuer"},
		{"wrong audience", sign(t, kp, with(func(c map[string]any) { c["aud"] = "https://mcp.example.com/other" })), "wrong audience"},
		{"audience prefix is not the audience", sign(t, kp, with(func(c map[string]any) { c["aud"] = "https://mcp.example.com" })), "wrong audience"},
		{"no audience", sign(t, kp, with(func(c map[string]any) { delete(c, "aud") })), "wrong audience"},
		{"expired beyond skew", sign(t, kp, with(func(c map[string]any) { c["exp"] = now.Add(-31 * time.Second).Unix() })), "token expired"},
		{"expired within skew", sign(t, kp, with(func(c map[string]any) { c["exp"] = now.Add(-20 * time.Second).Unix() })), ""},
		{"no expiry", sign(t, kp, with(func(c map[string]any) { delete(c, "exp") })), "token has no expiry"},
		{"nbf in the future", sign(t, kp, with(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })), "token not yet valid"},
		{"nbf within skew", sign(t, kp, with(func(c map[string]any) { c["nbf"] = now.Add(20 * time.Second).Unix() })), ""},
		{"iat in the future", sign(t, kp, with(func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() })), "token issued in the future"},
		{"missing sub", sign(t, kp, with(func(c map[string]any) { delete(c, "sub") })), "token has no subject"},
		{"not a JWT", "abc.def", "malformed token"},
		{"garbage header", "!!!.e30.sig", "malformed token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := v.Validate(context.Background(), tt.token, bearer.Expectation{})
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if tok.Subject != "user-1" {
					t.Fatalf("subject = %q", tok.Subject)
				}
				return
			}
			if !errors.Is(err, bearer.ErrInvalidToken) || bearer.Reason(err) != tt.reason {
				t.Fatalf("err = %v (reason %q), want reason %q", err, bearer.Reason(err), tt.reason)
			}
			if errors.Is(err, bearer.ErrUnavailable) {
				t.Fatalf("rejection must not be ErrUnavailable: %v", err)
			}
		})
	}
}

func TestJWTAlgorithmAllowList(t *testing.T) {
	if _, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, Audiences: []string{testResource},
		Algorithms: []jose.SignatureAlgorithm{jose.HS256, jose.HS512}}); err == nil {
		t.Fatal("an HMAC-only allow-list was accepted")
	}
	kp := newRSAKey(t, "k1")
	ec := newECKey(t, "e1")
	srv := newJWKSServer(t, kp.pub, ec.pub)
	// HS256 is configured but silently dropped; ES256 is not configured.
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, JWKSURL: srv.URL, Audiences: []string{testResource},
		Algorithms: []jose.SignatureAlgorithm{jose.HS256, jose.RS256}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(context.Background(), sign(t, kp, claimsAt(time.Now())), bearer.Expectation{}); err != nil {
		t.Fatalf("RS256: %v", err)
	}
	if _, err := v.Validate(context.Background(), sign(t, ec, claimsAt(time.Now())), bearer.Expectation{}); bearer.Reason(err) != "unsupported signing algorithm" {
		t.Fatalf("ES256 outside the allow-list: err = %v", err)
	}
}

func TestJWTScopes(t *testing.T) {
	kp := newRSAKey(t, "k1")
	srv := newJWKSServer(t, kp.pub)
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, JWKSURL: srv.URL, Audiences: []string{"x", testResource}, GroupsClaim: "roles"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		set  map[string]any
		want []string
	}{
		{"scope string", map[string]any{"scope": "a b  c"}, []string{"a", "b", "c"}},
		{"scp array", map[string]any{"scp": []string{"a", "b"}}, []string{"a", "b"}},
		{"scp string", map[string]any{"scp": "a b"}, []string{"a", "b"}},
		{"none", map[string]any{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claimsAt(time.Now())
			delete(c, "scope")
			for k, val := range tt.set {
				c[k] = val
			}
			c["roles"] = []string{"r1"}
			tok, err := v.Validate(context.Background(), sign(t, kp, c), bearer.Expectation{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tok.Scopes, tt.want) || !slices.Equal(tok.Identity.Groups, []string{"r1"}) {
				t.Fatalf("scopes = %q groups = %q", tok.Scopes, tok.Identity.Groups)
			}
		})
	}
}

// TestJWTKeyRotation: a token signed with a key the cache has not seen
// triggers exactly one refetch, which picks up the rotated key.
func TestJWTKeyRotation(t *testing.T) {
	old, next := newRSAKey(t, "old"), newRSAKey(t, "new")
	srv := newJWKSServer(t, old.pub)
	clk := fakeclock.New(time.Now())
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, JWKSURL: srv.URL, Audiences: []string{testResource}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if srv.fetches.Load() != 0 {
		t.Fatal("constructor fetched keys")
	}
	if _, err := v.Validate(ctx, sign(t, old, claimsAt(clk.Now())), bearer.Expectation{}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute) // past the refresh interval since the first fetch
	srv.setKeys(old.pub, next.pub)
	if _, err := v.Validate(ctx, sign(t, next, claimsAt(clk.Now())), bearer.Expectation{}); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (initial + one refresh)", got)
	}
	if _, err := v.Validate(ctx, sign(t, old, claimsAt(clk.Now())), bearer.Expectation{}); err != nil || srv.fetches.Load() != 2 {
		t.Fatalf("known key: err %v, fetches %d", err, srv.fetches.Load())
	}
}

// TestJWTUnknownKIDStorm: made-up kids cannot make the proxy hammer the
// IdP: one refetch per refresh interval, shared by concurrent callers.
func TestJWTUnknownKIDStorm(t *testing.T) {
	kp := newRSAKey(t, "k1")
	srv := newJWKSServer(t, kp.pub)
	clk := fakeclock.New(time.Now())
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, JWKSURL: srv.URL, Audiences: []string{testResource}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.Validate(ctx, sign(t, kp, claimsAt(clk.Now())), bearer.Expectation{}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	bogus := newRSAKey(t, "bogus")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := bogus
			b.kid = fmt.Sprintf("bogus-%d", i)
			if _, err := v.Validate(ctx, sign(t, b, claimsAt(clk.Now())), bearer.Expectation{}); bearer.Reason(err) != "unknown signing key" {
				t.Errorf("err = %v", err)
			}
		}()
	}
	wg.Wait()
	if got := srv.fetches.Load(); got != 2 {
		t.Fatalf("fetches = %d after 50 unknown kids, want 2", got)
	}
	clk.Advance(31 * time.Second)
	_, _ = v.Validate(ctx, sign(t, bogus, claimsAt(clk.Now())), bearer.Expectation{})
	if got := srv.fetches.Load(); got != 3 {
		t.Fatalf("fetches = %d after the interval, want 3", got)
	}
}

// TestJWTKeysUnavailable: a JWKS outage is ErrUnavailable (503), not an
// invalid token; cached keys keep working through it.
func TestJWTKeysUnavailable(t *testing.T) {
	kp := newRSAKey(t, "k1")
	srv := newJWKSServer(t, kp.pub)
	srv.down.Store(true)
	clk := fakeclock.New(time.Now())
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, JWKSURL: srv.URL, Audiences: []string{testResource}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = v.Validate(ctx, sign(t, kp, claimsAt(clk.Now())), bearer.Expectation{})
	if !errors.Is(err, bearer.ErrUnavailable) || errors.Is(err, bearer.ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	srv.down.Store(false)
	clk.Advance(time.Minute)
	if _, err := v.Validate(ctx, sign(t, kp, claimsAt(clk.Now())), bearer.Expectation{}); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	srv.down.Store(true)
	clk.Advance(2 * time.Hour) // keys are stale; the refetch fails
	if _, err := v.Validate(ctx, sign(t, kp, claimsAt(clk.Now())), bearer.Expectation{}); err != nil {
		t.Fatalf("stale keys during an outage: %v", err)
	}
}

// TestJWTKeySelection: only a key published for signatures, with a matching
// algorithm, may verify a token.
func TestJWTKeySelection(t *testing.T) {
	kp := newRSAKey(t, "k1")
	asEnc := kp.pub
	asEnc.Use = "enc"
	psToken := func() string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.PS256, Key: kp.key},
			(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kp.kid))
		if err != nil {
			t.Fatal(err)
		}
		out, err := jwt.Signed(s).Claims(claimsAt(time.Now())).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name   string
		key    jose.JSONWebKey
		token  func() string
		reason string
	}{
		{"control", kp.pub, func() string { return sign(t, kp, claimsAt(time.Now())) }, ""},
		{"encryption key", asEnc, func() string { return sign(t, kp, claimsAt(time.Now())) }, "unknown signing key"},
		{"key published for RS256, token PS256", kp.pub, psToken, "unknown signing key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, Audiences: []string{testResource},
				KeySet: func(context.Context) (*jose.JSONWebKeySet, error) {
					return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{tt.key}}, nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Validate(context.Background(), tt.token(), bearer.Expectation{})
			if tt.reason == "" && err != nil || tt.reason != "" && bearer.Reason(err) != tt.reason {
				t.Fatalf("err = %v, want reason %q", err, tt.reason)
			}
		})
	}
}

func TestJWTDiscoveryChecksIssuer(t *testing.T) {
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: "http://127.0.0.1:1", Audiences: []string{testResource}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(context.Background(), sign(t, newRSAKey(t, "k"), claimsAt(time.Now())), bearer.Expectation{}); !errors.Is(err, bearer.ErrUnavailable) {
		t.Fatalf("unreachable issuer: err = %v", err)
	}
	// A provider whose discovery names another issuer is not trusted.
	p := oidcprovider.Start(t, oidcprovider.Options{Clients: rpClient(), AccessTokenAudience: []string{testResource}})
	tok := providerToken(t, p)
	v, err = bearer.NewJWTValidator(bearer.JWTOptions{Issuer: p.Issuer() + "/tenant", Audiences: []string{testResource}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(context.Background(), tok.AccessToken, bearer.Expectation{}); !errors.Is(err, bearer.ErrUnavailable) {
		t.Fatalf("discovery for another issuer: err = %v", err)
	}
	// A discovery document naming another issuer is refused even when its
	// jwks_uri would verify the token.
	kp := newRSAKey(t, "k1")
	jwks := newJWKSServer(t, kp.pub)
	var disco *httptest.Server
	disco = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": "https://evil.example", "jwks_uri": jwks.URL})
	}))
	t.Cleanup(disco.Close)
	v, err = bearer.NewJWTValidator(bearer.JWTOptions{Issuer: disco.URL, Audiences: []string{testResource}})
	if err != nil {
		t.Fatal(err)
	}
	c := claimsAt(time.Now())
	c["iss"] = disco.URL
	if _, err := v.Validate(context.Background(), sign(t, kp, c), bearer.Expectation{}); !errors.Is(err, bearer.ErrUnavailable) {
		t.Fatalf("discovery naming another issuer: err = %v", err)
	}
}

func TestJWTLocalKeySet(t *testing.T) {
	kp := newRSAKey(t, "k1")
	var calls int
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, Audiences: []string{testResource},
		KeySet: func(context.Context) (*jose.JSONWebKeySet, error) {
			calls++
			// Private keys are accepted: only their public half is used.
			return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{kp.priv}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(context.Background(), sign(t, kp, claimsAt(time.Now())), bearer.Expectation{}); err != nil || calls != 1 {
		t.Fatalf("err = %v, calls = %d", err, calls)
	}
	if _, err := v.Validate(context.Background(), sign(t, newRSAKey(t, "k2"), claimsAt(time.Now())), bearer.Expectation{}); bearer.Reason(err) != "unknown signing key" {
		t.Fatalf("unknown kid: %v", err)
	}
}

// signTyp signs claims with an explicit typ header ("" omits it).
func signTyp(t testing.TB, kp keyPair, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), kp.kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: kp.alg, Key: kp.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestJWTTypeAllowList: with Types set (the façade uses at+jwt), a JWT of
// another type signed by the same key, such as the identity assertion the
// MCP server receives, is not an access token.
func TestJWTTypeAllowList(t *testing.T) {
	kp := newRSAKey(t, "k1")
	keys := func(context.Context) (*jose.JSONWebKeySet, error) {
		return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{kp.pub}}, nil
	}
	strict, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, Audiences: []string{testResource},
		KeySet: keys, Types: []string{"at+jwt"}})
	if err != nil {
		t.Fatal(err)
	}
	lenient, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, Audiences: []string{testResource}, KeySet: keys})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		typ       string
		strictOK  bool
		lenientOK bool
	}{
		{"at+jwt", true, true},
		{"application/at+JWT", true, true},
		{"JWT", false, true},
		{"", false, true},
	}
	for _, tt := range tests {
		t.Run("typ "+tt.typ, func(t *testing.T) {
			tok := signTyp(t, kp, tt.typ, claimsAt(time.Now()))
			_, err := strict.Validate(context.Background(), tok, bearer.Expectation{})
			if tt.strictOK != (err == nil) {
				t.Fatalf("with Types: err = %v, want ok=%v", err, tt.strictOK)
			}
			if err != nil && bearer.Reason(err) != "wrong token type" {
				t.Fatalf("reason = %q", bearer.Reason(err))
			}
			if _, err := lenient.Validate(context.Background(), tok, bearer.Expectation{}); tt.lenientOK != (err == nil) {
				t.Fatalf("without Types: err = %v", err)
			}
		})
	}
}
