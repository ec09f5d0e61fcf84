package bearer_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
)

type fixedValidator struct{ tok *bearer.Token }

func (f fixedValidator) Validate(context.Context, string, bearer.Expectation) (*bearer.Token, error) {
	return f.tok, nil
}

// A failed build is retried on the next request; a successful one is kept
// and shared by concurrent callers.
func TestLazyBuildsOnceItCan(t *testing.T) {
	var builds atomic.Int32
	ready := atomic.Bool{}
	want := &bearer.Token{Subject: "u"}
	l := bearer.NewLazy(func() (bearer.Validator, error) {
		builds.Add(1)
		if !ready.Load() {
			return nil, errors.New("issuer not known yet")
		}
		return fixedValidator{want}, nil
	})
	if _, err := l.Validate(t.Context(), "t", bearer.Expectation{}); err == nil {
		t.Fatal("validated before the build could succeed")
	}
	ready.Store(true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := l.Validate(context.Background(), "t", bearer.Expectation{}); err != nil || got != want {
				t.Errorf("Validate = %v, %v", got, err)
			}
		}()
	}
	wg.Wait()
	if n := builds.Load(); n != 2 {
		t.Fatalf("%d builds, want 2 (one failed, one kept)", n)
	}
}

// The provider validator waits for the issuer: until discovery knows it,
// tokens are refused, then JWTs are checked against the provider's keys.
func TestProviderValidatorWaitsForTheIssuer(t *testing.T) {
	kp := newRSAKey(t, "k1")
	jwks := newJWKSServer(t, kp.pub)
	var issuer atomic.Value
	issuer.Store("")
	v := bearer.NewProviderValidator(bearer.ProviderOptions{Issuer: func() string { return issuer.Load().(string) }, JWKSURL: jwks.URL})
	want := bearer.Expectation{Audience: testResource}
	raw := sign(t, kp, claimsAt(time.Now()))
	if _, err := v.Validate(t.Context(), raw, want); err == nil {
		t.Fatal("accepted before the issuer was known")
	}
	issuer.Store(testIssuer)
	if tok, err := v.Validate(t.Context(), raw, want); err != nil || tok.Issuer != testIssuer {
		t.Fatalf("after discovery: %v, %v", tok, err)
	}
}
