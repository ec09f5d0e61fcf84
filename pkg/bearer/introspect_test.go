package bearer_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// TestIntrospectionAgainstRealProvider introspects the OP's opaque access
// tokens at its RFC 7662 endpoint.
func TestIntrospectionAgainstRealProvider(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{Clients: rpClient()})
	tok := providerToken(t, p)
	if bearer.LooksLikeJWT(tok.AccessToken) {
		t.Fatal("expected an opaque access token")
	}
	in, err := bearer.NewIntrospector(bearer.IntrospectionOptions{
		Endpoint: p.Issuer() + "/oauth/introspect", ClientID: "rp", ClientSecret: "rp-secret",
		Issuer: p.Issuer(), Audiences: []string{"rp"},
		// zitadel checks the audience against the introspecting client
		// itself and returns no aud, so the proxy must be told to accept that.
		AllowMissingAudience: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := in.Validate(context.Background(), tok.AccessToken, bearer.Expectation{})
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got.Subject != oidcprovider.DemoUserID || got.Identity.Email != oidcprovider.DemoEmail || got.Identity.Method != bearer.Method {
		t.Fatalf("token = %+v", got)
	}
	if _, err := in.Validate(context.Background(), "not-a-token-the-provider-issued", bearer.Expectation{}); !errors.Is(err, bearer.ErrInvalidToken) {
		t.Fatalf("unknown token: err = %v", err)
	}
	bad, err := bearer.NewIntrospector(bearer.IntrospectionOptions{Endpoint: p.Issuer() + "/oauth/introspect", ClientID: "rp", ClientSecret: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Validate(context.Background(), tok.AccessToken, bearer.Expectation{}); !errors.Is(err, bearer.ErrUnavailable) {
		t.Fatalf("rejected client credentials: err = %v, want ErrUnavailable", err)
	}
}

// introspectionServer answers with resp and counts calls; it insists on
// client authentication.
func introspectionServer(t *testing.T, resp func(token string) map[string]any) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		id, secret, ok := r.BasicAuth()
		if !ok || id != "proxy" || secret != "s%3Acret" { // form-encoded "s:cret"
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodPost || r.ParseForm() != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp(r.PostForm.Get("token")))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestIntrospectionRejections(t *testing.T) {
	now := time.Now()
	active := func(extra map[string]any) map[string]any {
		m := map[string]any{"active": true, "sub": "u1", "aud": testResource, "exp": now.Add(time.Hour).Unix(), "scope": "a b", "client_id": "c1"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name   string
		resp   map[string]any
		reason string
		// allowNoAud sets AllowMissingAudience.
		allowNoAud bool
	}{
		{"active", active(nil), "", false},
		{"aud array", active(map[string]any{"aud": []string{"x", testResource}}), "", false},
		{"no aud", active(map[string]any{"aud": nil}), "token has no audience", false},
		{"no aud, explicitly allowed", active(map[string]any{"aud": nil}), "", true},
		{"wrong aud, missing allowed", active(map[string]any{"aud": "https://other.example/mcp"}), "wrong audience", true},
		{"inactive", map[string]any{"active": false}, "token is not active", false},
		{"active as string is not active", active(map[string]any{"active": "true"}), "token is not active", false},
		{"wrong audience", active(map[string]any{"aud": "https://other.example/mcp"}), "wrong audience", false},
		{"expired", active(map[string]any{"exp": now.Add(-time.Second).Unix()}), "token expired", false},
		{"not yet valid", active(map[string]any{"nbf": now.Add(time.Minute).Unix()}), "token not yet valid", false},
		{"nbf within skew", active(map[string]any{"nbf": now.Add(10 * time.Second).Unix()}), "", false},
		{"wrong issuer", active(map[string]any{"iss": "https://evil.example"}), "wrong issuer", false},
		{"no subject", active(map[string]any{"sub": nil}), "token has no subject", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := introspectionServer(t, func(string) map[string]any { return tt.resp })
			in, err := bearer.NewIntrospector(bearer.IntrospectionOptions{Endpoint: srv.URL, ClientID: "proxy", ClientSecret: "s:cret",
				Audiences: []string{testResource}, Issuer: testIssuer, AllowMissingAudience: tt.allowNoAud})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := in.Validate(context.Background(), "opaque-token", bearer.Expectation{})
			if tt.reason == "" {
				if err != nil || tok.Subject != "u1" || tok.ClientID != "c1" || len(tok.Scopes) != 2 {
					t.Fatalf("tok = %+v, err = %v", tok, err)
				}
				return
			}
			if !errors.Is(err, bearer.ErrInvalidToken) || bearer.Reason(err) != tt.reason {
				t.Fatalf("err = %v, want reason %q", err, tt.reason)
			}
		})
	}
}

func TestIntrospectionCache(t *testing.T) {
	clk := fakeclock.New(time.Now())
	exp := clk.Now().Add(45 * time.Second)
	isActive := atomic.Bool{}
	isActive.Store(true)
	srv, calls := introspectionServer(t, func(token string) map[string]any {
		if !isActive.Load() || token != "tok-1" {
			return map[string]any{"active": false}
		}
		return map[string]any{"active": true, "sub": "u1", "exp": exp.Unix()}
	})
	in, err := bearer.NewIntrospector(bearer.IntrospectionOptions{Endpoint: srv.URL, ClientID: "proxy", ClientSecret: "s:cret", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	validate := func(tok string) error { _, err := in.Validate(ctx, tok, bearer.Expectation{}); return err }

	if err := validate("tok-1"); err != nil {
		t.Fatal(err)
	}
	if err := validate("tok-1"); err != nil || calls.Load() != 1 {
		t.Fatalf("second validation: err %v, calls %d, want a cache hit", err, calls.Load())
	}
	// Revoked at the AS: the cached answer holds for at most the cache TTL.
	isActive.Store(false)
	clk.Advance(29 * time.Second)
	if err := validate("tok-1"); err != nil || calls.Load() != 1 {
		t.Fatalf("within TTL: err %v, calls %d", err, calls.Load())
	}
	clk.Advance(2 * time.Second)
	if err := validate("tok-1"); !errors.Is(err, bearer.ErrInvalidToken) || calls.Load() != 2 {
		t.Fatalf("after TTL: err %v, calls %d", err, calls.Load())
	}
	// No negative cache by default: every inactive answer is asked again.
	_ = validate("tok-1")
	if calls.Load() != 3 {
		t.Fatalf("negative answer was cached: calls %d", calls.Load())
	}

	// The cache never outlives the token's exp.
	isActive.Store(true)
	exp = clk.Now().Add(10 * time.Second)
	if err := validate("tok-1"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(11 * time.Second)
	before := calls.Load()
	if err := validate("tok-1"); !errors.Is(err, bearer.ErrInvalidToken) || calls.Load() != before+1 {
		t.Fatalf("past exp: err %v, calls %d (before %d)", err, calls.Load(), before)
	}
}

func TestIntrospectionNegativeCacheCapped(t *testing.T) {
	clk := fakeclock.New(time.Now())
	srv, calls := introspectionServer(t, func(string) map[string]any { return map[string]any{"active": false} })
	in, err := bearer.NewIntrospector(bearer.IntrospectionOptions{Endpoint: srv.URL, ClientID: "proxy", ClientSecret: "s:cret",
		Now: clk.Now, NegativeCacheTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = in.Validate(context.Background(), "t", bearer.Expectation{})
	_, _ = in.Validate(context.Background(), "t", bearer.Expectation{})
	if calls.Load() != 1 {
		t.Fatalf("calls = %d, want the negative answer cached", calls.Load())
	}
	clk.Advance(bearer.MaxNegativeCacheTTL + time.Millisecond)
	_, _ = in.Validate(context.Background(), "t", bearer.Expectation{})
	if calls.Load() != 2 {
		t.Fatalf("calls = %d, negative cache exceeded its cap", calls.Load())
	}
}

func TestChainRoutesByShape(t *testing.T) {
	kp := newRSAKey(t, "k1")
	jwks := newJWKSServer(t, kp.pub)
	jv, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, JWKSURL: jwks.URL, Audiences: []string{testResource}})
	if err != nil {
		t.Fatal(err)
	}
	srv, calls := introspectionServer(t, func(string) map[string]any {
		return map[string]any{"active": true, "sub": "opaque-user"}
	})
	in, err := bearer.NewIntrospector(bearer.IntrospectionOptions{Endpoint: srv.URL, ClientID: "proxy", ClientSecret: "s:cret"})
	if err != nil {
		t.Fatal(err)
	}
	c := &bearer.Chain{JWT: jv, Opaque: in}
	if tok, err := c.Validate(context.Background(), sign(t, kp, claimsAt(time.Now())), bearer.Expectation{}); err != nil || tok.Subject != "user-1" || calls.Load() != 0 {
		t.Fatalf("JWT: %+v %v calls %d", tok, err, calls.Load())
	}
	if tok, err := c.Validate(context.Background(), "opaque", bearer.Expectation{}); err != nil || tok.Subject != "opaque-user" {
		t.Fatalf("opaque: %+v %v", tok, err)
	}
	if _, err := (&bearer.Chain{JWT: jv}).Validate(context.Background(), "opaque", bearer.Expectation{}); !errors.Is(err, bearer.ErrInvalidToken) {
		t.Fatalf("opaque without introspection: %v", err)
	}
}
