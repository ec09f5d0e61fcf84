package bearer

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestIntrospectionCacheKeyIsHashed: the cache must not hold the token
// itself, only its SHA-256.
func TestIntrospectionCacheKeyIsHashed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": "u"})
	}))
	defer srv.Close()
	in, err := NewIntrospector(IntrospectionOptions{Endpoint: srv.URL, ClientID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	const token = "secret-opaque-token"
	if _, err := in.Validate(context.Background(), token, Expectation{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := in.cache[sha256.Sum256([]byte(token))]; !ok || len(in.cache) != 1 {
		t.Fatalf("cache = %v, want one entry under the token's SHA-256", in.cache)
	}
	for k := range in.cache {
		if strings.Contains(string(k[:]), token) {
			t.Fatal("cache key contains the token")
		}
	}
}
