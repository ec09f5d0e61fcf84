package bearer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
)

// One validator serves every host: the issuer and audience come from the
// request, are checked on cache hits too, and a request without them is
// refused rather than accepted with no check.
func TestJWTExpectationFromRequest(t *testing.T) {
	kp := newECKey(t, "k1")
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{IssuerFromRequest: true, AudienceFromRequest: true,
		KeySet: func(context.Context) (*jose.JSONWebKeySet, error) {
			return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{kp.pub}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	claims := claimsAt(time.Now())
	claims["iss"], claims["aud"] = "https://a.example", "https://a.example/mcp"
	raw := sign(t, kp, claims)
	expectFor := func(base string) bearer.Expectation {
		return bearer.Expectation{Issuer: base, Audience: base + "/mcp"}
	}
	for i, tc := range []struct {
		name   string
		want   bearer.Expectation
		reason string
	}{
		{"expected host", expectFor("https://a.example"), ""},
		{"again, from the cache", expectFor("https://a.example"), ""},
		{"another host, from the cache", expectFor("https://b.example"), "wrong issuer"},
		{"audience only differs", bearer.Expectation{Issuer: "https://a.example", Audience: "https://a.example/other"}, "wrong audience"},
		{"no expectation", bearer.Expectation{}, "no expected issuer for this request"},
		{"empty audience", bearer.Expectation{Issuer: "https://a.example"}, "no expected audience for this request"},
	} {
		_, err := v.Validate(context.Background(), raw, tc.want)
		if tc.reason == "" {
			if err != nil {
				t.Fatalf("%d %s: %v", i, tc.name, err)
			}
			continue
		}
		if !errors.Is(err, bearer.ErrInvalidToken) || bearer.Reason(err) != tc.reason {
			t.Fatalf("%d %s: err = %v, want %q", i, tc.name, err, tc.reason)
		}
	}
	if _, err := bearer.NewJWTValidator(bearer.JWTOptions{IssuerFromRequest: true, AudienceFromRequest: true}); err == nil {
		t.Fatal("IssuerFromRequest without KeySet or JWKSURL accepted (keys cannot be discovered per request)")
	}
}

// An introspected answer is cached once; its audience is checked against
// each request's expectation, so a refusal for one host neither poisons
// nor is answered from another host's acceptance.
func TestIntrospectionAudienceFromRequest(t *testing.T) {
	srv, calls := introspectionServer(t, func(string) map[string]any {
		return map[string]any{"active": true, "sub": "u1", "aud": "https://a.example/mcp", "exp": time.Now().Add(time.Hour).Unix()}
	})
	in, err := bearer.NewIntrospector(bearer.IntrospectionOptions{Endpoint: srv.URL, ClientID: "proxy", ClientSecret: "s:cret",
		AudienceFromRequest: true, NegativeCacheTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	aud := func(a string) bearer.Expectation { return bearer.Expectation{Audience: a} }
	ctx := context.Background()
	if _, err := in.Validate(ctx, "opaque", aud("https://b.example/mcp")); bearer.Reason(err) != "wrong audience" {
		t.Fatalf("other host: %v, want wrong audience", err)
	}
	if _, err := in.Validate(ctx, "opaque", aud("https://a.example/mcp")); err != nil {
		t.Fatalf("expected host after a refusal elsewhere: %v", err)
	}
	if _, err := in.Validate(ctx, "opaque", bearer.Expectation{}); bearer.Reason(err) != "no expected audience for this request" {
		t.Fatalf("no expectation: %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d introspection calls, want 1 (the answer is cached across hosts)", n)
	}
}
