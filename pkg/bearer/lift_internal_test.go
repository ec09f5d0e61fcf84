package bearer

import (
	"reflect"
	"testing"
)

func TestLiftClaims(t *testing.T) {
	tests := []struct {
		name   string
		claims map[string]any
		lift   string
		want   map[string]any
	}{
		{"no lift claim configured", map[string]any{"sub": "a", "ext": map[string]any{"d": "r"}}, "",
			map[string]any{"sub": "a", "ext": map[string]any{"d": "r"}}},
		{"entries lifted, the object left out", map[string]any{"sub": "a", "ext": map[string]any{"d": "r", "n": 1.0}}, "ext",
			map[string]any{"sub": "a", "d": "r", "n": 1.0}},
		{"an entry never replaces a top-level claim",
			map[string]any{"iss": "https://proxy", "client_id": "c", "ext": map[string]any{"iss": "evil", "client_id": "evil", "d": "r"}}, "ext",
			map[string]any{"iss": "https://proxy", "client_id": "c", "d": "r"}},
		{"not an object: claims as they are", map[string]any{"sub": "a", "ext": "text"}, "ext",
			map[string]any{"sub": "a", "ext": "text"}},
		{"absent", map[string]any{"sub": "a"}, "ext", map[string]any{"sub": "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := liftClaims(tt.claims, tt.lift); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			tok := tokenFromClaims(tt.claims, DefaultGroupsClaim, tt.lift)
			if !reflect.DeepEqual(tok.Identity.Claims, tt.want) || !reflect.DeepEqual(tok.Claims, tt.claims) {
				t.Fatalf("token: identity claims %v, token claims %v", tok.Identity.Claims, tok.Claims)
			}
		})
	}
}
