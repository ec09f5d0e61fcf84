package bearer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
)

const (
	cacheTestIssuer   = "https://issuer.example"
	cacheTestAudience = "https://mcp.example.com/mcp"
)

// cacheFixture is a validator over a mutable, counting local key set and
// an injected clock.
type cacheFixture struct {
	t     *testing.T
	v     *JWTValidator
	key   *ecdsa.PrivateKey
	kid   string
	calls atomic.Int64

	*fakeclock.Clock

	mu   sync.Mutex
	keys []jose.JSONWebKey
}

func newCacheFixture(t *testing.T, size int) *cacheFixture {
	t.Helper()
	f := &cacheFixture{t: t, kid: "k1", Clock: fakeclock.New(time.Unix(1_800_000_000, 0))}
	f.key = newP256(t)
	f.keys = []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: string(jose.ES256), Use: "sig"}}
	v, err := NewJWTValidator(JWTOptions{
		Issuer: cacheTestIssuer, Audiences: []string{cacheTestAudience}, CacheSize: size,
		Now: f.Now,
		KeySet: func(context.Context) (*jose.JSONWebKeySet, error) {
			f.calls.Add(1)
			f.mu.Lock()
			defer f.mu.Unlock()
			return &jose.JSONWebKeySet{Keys: slices.Clone(f.keys)}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f
}

func newP256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (f *cacheFixture) setKeys(keys ...jose.JSONWebKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = keys
}

// token signs claims valid at the fixture's now for lifetime, with edit
// applied, using key (the fixture's key when nil).
func (f *cacheFixture) token(lifetime time.Duration, key *ecdsa.PrivateKey, edit func(map[string]any)) string {
	f.t.Helper()
	if key == nil {
		key = f.key
	}
	now := f.Now()
	claims := map[string]any{
		"iss": cacheTestIssuer, "sub": "user-1", "aud": []string{cacheTestAudience},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(lifetime).Unix(),
		"scope": "mcp:tools", "groups": []string{"g1"}, "nested": map[string]any{"a": []any{"x"}},
	}
	if edit != nil {
		edit(claims)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", f.kid))
	if err != nil {
		f.t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// mark tags the cached token for raw so a later Validate shows whether it
// was answered from the cache (the tag) or validated afresh (no tag).
func (f *cacheFixture) mark(raw string) {
	f.t.Helper()
	f.v.cache.mu.Lock()
	defer f.v.cache.mu.Unlock()
	e := f.v.cache.entries[sha256.Sum256([]byte(raw))]
	if e == nil {
		f.t.Fatal("token not cached")
	}
	e.tok.ClientID = "from-cache"
}

func TestJWTCacheHit(t *testing.T) {
	f := newCacheFixture(t, 0)
	ctx := context.Background()
	raw := f.token(time.Hour, nil, nil)
	if _, err := f.v.Validate(ctx, raw, Expectation{}); err != nil {
		t.Fatal(err)
	}
	f.mark(raw)
	got, err := f.v.Validate(ctx, raw, Expectation{})
	if err != nil || got.ClientID != "from-cache" || got.Subject != "user-1" {
		t.Fatalf("second Validate = %+v, %v; want a cache hit", got, err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("key set calls = %d, want 2 (one per Validate: the hit re-checks the key)", n)
	}
	if n := f.v.cache.len(); n != 1 {
		t.Fatalf("cache entries = %d, want 1", n)
	}
	for k := range f.v.cache.entries {
		if string(k[:]) == raw {
			t.Fatal("cache key is the token")
		}
	}
}

// TestJWTCacheLifetime: a cached token is accepted exactly as long as a
// fresh validation would accept it (exp plus skew), and no longer than the
// cache's max age.
func TestJWTCacheLifetime(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		advance  time.Duration
		hit      bool
		reason   string
	}{
		{"before exp", time.Minute, 59 * time.Second, true, ""},
		{"at exp plus skew", time.Minute, time.Minute + DefaultSkew, true, ""},
		{"past exp plus skew", time.Minute, time.Minute + DefaultSkew + time.Second, false, "token expired"},
		{"just under max age", time.Hour, jwtCacheMaxAge - time.Second, true, ""},
		{"at max age: validated afresh", time.Hour, jwtCacheMaxAge, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newCacheFixture(t, 0)
			ctx := context.Background()
			raw := f.token(tt.lifetime, nil, nil)
			if _, err := f.v.Validate(ctx, raw, Expectation{}); err != nil {
				t.Fatal(err)
			}
			f.mark(raw)
			f.Advance(tt.advance)
			got, err := f.v.Validate(ctx, raw, Expectation{})
			switch {
			case tt.reason != "":
				if Reason(err) != tt.reason {
					t.Fatalf("err = %v, want reason %q", err, tt.reason)
				}
				if n := f.v.cache.len(); n != 0 {
					t.Fatalf("expired entry kept: %d entries", n)
				}
			case err != nil:
				t.Fatal(err)
			case (got.ClientID == "from-cache") != tt.hit:
				t.Fatalf("hit = %v, want %v", got.ClientID == "from-cache", tt.hit)
			}
		})
	}
}

// TestJWTCacheKeyRemoved: a cached token stops being accepted as soon as
// the key that signed it leaves the key set, or is replaced under the same
// kid.
func TestJWTCacheKeyRemoved(t *testing.T) {
	tests := []struct {
		name   string
		keys   func(f *cacheFixture) []jose.JSONWebKey
		reason string
	}{
		{"key removed", func(*cacheFixture) []jose.JSONWebKey { return nil }, "unknown signing key"},
		{"other key under the same kid", func(f *cacheFixture) []jose.JSONWebKey {
			return []jose.JSONWebKey{{Key: &newP256(t).PublicKey, KeyID: f.kid, Algorithm: string(jose.ES256), Use: "sig"}}
		}, "bad signature"},
		{"key now for encryption only", func(f *cacheFixture) []jose.JSONWebKey {
			return []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: string(jose.ES256), Use: "enc"}}
		}, "unknown signing key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newCacheFixture(t, 0)
			ctx := context.Background()
			raw := f.token(time.Hour, nil, nil)
			for range 2 {
				if _, err := f.v.Validate(ctx, raw, Expectation{}); err != nil {
					t.Fatal(err)
				}
			}
			f.setKeys(tt.keys(f)...)
			if _, err := f.v.Validate(ctx, raw, Expectation{}); Reason(err) != tt.reason {
				t.Fatalf("err = %v, want reason %q", err, tt.reason)
			}
			if n := f.v.cache.len(); n != 0 {
				t.Fatalf("entry for a withdrawn key kept: %d entries", n)
			}
		})
	}
}

// TestJWTCacheOnlySuccesses: rejected tokens are never cached, so every
// retry is validated in full.
func TestJWTCacheOnlySuccesses(t *testing.T) {
	f := newCacheFixture(t, 0)
	tests := []struct {
		name   string
		raw    string
		reason string
	}{
		{"wrong audience", f.token(time.Hour, nil, func(c map[string]any) { c["aud"] = "https://other.example" }), "wrong audience"},
		{"bad signature", f.token(time.Hour, newP256(t), nil), "bad signature"},
		{"expired", f.token(-time.Hour, nil, nil), "token expired"},
		{"not yet valid", f.token(time.Hour, nil, func(c map[string]any) { c["nbf"] = f.Now().Add(time.Hour).Unix() }), "token not yet valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 {
				if _, err := f.v.Validate(context.Background(), tt.raw, Expectation{}); Reason(err) != tt.reason {
					t.Fatalf("err = %v, want reason %q", err, tt.reason)
				}
			}
			if n := f.v.cache.len(); n != 0 {
				t.Fatalf("cache entries = %d after a rejection", n)
			}
		})
	}
}

func TestJWTCacheBounded(t *testing.T) {
	tests := []struct {
		name string
		size int
		want int // entries at most
	}{
		{"small", 8, 8},
		{"one", 1, 1},
		{"disabled", -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newCacheFixture(t, tt.size)
			for i := range 50 {
				raw := f.token(time.Hour, nil, func(c map[string]any) { c["jti"] = fmt.Sprint(i) })
				if _, err := f.v.Validate(context.Background(), raw, Expectation{}); err != nil {
					t.Fatal(err)
				}
				if f.v.cache == nil {
					continue
				}
				if n := f.v.cache.len(); n > tt.want || n == 0 {
					t.Fatalf("after %d tokens: %d entries, want 1..%d", i+1, n, tt.want)
				}
			}
			if tt.size < 0 && f.v.cache != nil {
				t.Fatal("negative CacheSize did not disable the cache")
			}
		})
	}
}

// TestJWTCacheEvictsExpiredFirst: when full, outlived entries go before
// live ones.
func TestJWTCacheEvictsExpiredFirst(t *testing.T) {
	f := newCacheFixture(t, 4)
	ctx := context.Background()
	var short []string
	for i := range 3 {
		raw := f.token(time.Minute, nil, func(c map[string]any) { c["jti"] = fmt.Sprint(i) })
		short = append(short, raw)
		if _, err := f.v.Validate(ctx, raw, Expectation{}); err != nil {
			t.Fatal(err)
		}
	}
	long := f.token(time.Hour, nil, func(c map[string]any) { c["jti"] = "long" })
	if _, err := f.v.Validate(ctx, long, Expectation{}); err != nil {
		t.Fatal(err)
	}
	f.Advance(2 * time.Minute) // the short tokens are past exp plus skew
	if _, err := f.v.Validate(ctx, f.token(time.Hour, nil, func(c map[string]any) { c["jti"] = "new" }), Expectation{}); err != nil {
		t.Fatal(err)
	}
	if n := f.v.cache.len(); n != 2 {
		t.Fatalf("entries = %d, want 2 (the long-lived and the new token)", n)
	}
	f.mark(long)
}

// TestJWTCacheSharesTheToken: a hit returns the token the miss validated,
// whole and without copying it (no per-request copy of the claims), and
// allocates almost nothing.
func TestJWTCacheSharesTheToken(t *testing.T) {
	f := newCacheFixture(t, 0)
	ctx := context.Background()
	raw := f.token(time.Hour, nil, nil)
	first, err := f.v.Validate(ctx, raw, Expectation{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got, err := f.v.Validate(ctx, raw, Expectation{})
		if err != nil {
			t.Fatal(err)
		}
		if got != first {
			t.Fatalf("validation %d returned a copy of the cached token", i)
		}
		nested, _ := got.Claims["nested"].(map[string]any)
		list, _ := nested["a"].([]any)
		if got.Subject != "user-1" || got.Identity.Subject != "user-1" || got.Claims["sub"] != "user-1" ||
			!slices.Equal(got.Scopes, []string{"mcp:tools"}) || !slices.Equal(got.Audience, []string{cacheTestAudience}) ||
			!slices.Equal(got.Identity.Groups, []string{"g1"}) || len(list) != 1 || list[0] != "x" {
			t.Fatalf("validation %d: token = %+v", i, got)
		}
		if got.Identity.Claims["sub"] != "user-1" {
			t.Fatalf("validation %d: identity claims = %v", i, got.Identity.Claims)
		}
	}
	// A copy of the claims would be a map, slices and the token: well over
	// this. What remains is this fixture's key set function, which builds a
	// fresh set on every call.
	const maxAllocs = 2
	if n := testing.AllocsPerRun(100, func() {
		if _, err := f.v.Validate(ctx, raw, Expectation{}); err != nil {
			t.Fatal(err)
		}
	}); n > maxAllocs {
		t.Fatalf("a cache hit allocates %.0f times, want at most %d", n, maxAllocs)
	}
}

// TestJWTCacheConcurrent exercises hits, misses and evictions from many
// goroutines under -race.
func TestJWTCacheConcurrent(t *testing.T) {
	f := newCacheFixture(t, 4)
	var tokens []string
	for i := range 8 {
		tokens = append(tokens, f.token(time.Hour, nil, func(c map[string]any) { c["jti"] = fmt.Sprint(i) }))
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				got, err := f.v.Validate(context.Background(), tokens[(g+i)%len(tokens)], Expectation{})
				if err != nil {
					t.Error(err)
					return
				}
				// Readers only: the token is shared (see Validator).
				if got.Claims["sub"] != "user-1" || got.Scopes[0] != "mcp:tools" {
					t.Errorf("token = %+v", got)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := f.v.cache.len(); n > 4 {
		t.Fatalf("entries = %d, want at most 4", n)
	}
}

// TestJWTCacheJWKSKeyRemoved: with fetched keys, a cached token is refused
// once a refetched JWKS no longer has its key.
func TestJWTCacheJWKSKeyRemoved(t *testing.T) {
	f := newCacheFixture(t, 0)
	var mu sync.Mutex
	published := []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: string(jose.ES256), Use: "sig"}}
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: published})
	}))
	t.Cleanup(srv.Close)
	v, err := NewJWTValidator(JWTOptions{Issuer: cacheTestIssuer, JWKSURL: srv.URL, Audiences: []string{cacheTestAudience},
		Now: f.Now, KeysMaxAge: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	raw := f.token(time.Hour, nil, nil)
	for range 3 {
		if _, err := v.Validate(ctx, raw, Expectation{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	mu.Lock()
	published = nil
	mu.Unlock()
	f.Advance(2 * time.Minute) // keys are past KeysMaxAge; the entry is not past its max age
	if _, err := v.Validate(ctx, raw, Expectation{}); Reason(err) != "unknown signing key" {
		t.Fatalf("err = %v, want unknown signing key", err)
	}
}
