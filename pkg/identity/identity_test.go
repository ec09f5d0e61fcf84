package identity_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

func TestRefreshedExtraClaims(t *testing.T) {
	old := identity.Identity{Subject: "a", Email: "a@example.com", ExtraClaims: map[string]any{"department": "research", "level": 3.0}}
	tests := []struct {
		name  string
		fresh identity.Identity
		want  map[string]any
	}{
		{"taken as sent", identity.Identity{Subject: "a", ExtraClaims: map[string]any{"department": "sales"}}, map[string]any{"department": "sales"}},
		{"absent: gone (fail closed, like groups)", identity.Identity{Subject: "a"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := identity.Refreshed(old, tt.fresh)
			if !reflect.DeepEqual(got.ExtraClaims, tt.want) || got.Email != old.Email {
				t.Fatalf("extra %v email %q, want %v and the login's email", got.ExtraClaims, got.Email, tt.want)
			}
		})
	}
}

// TestClaimsNeverStored: a bearer token's claims (Claims) never reach a
// stored identity; the kept claims (ExtraClaims) do, and an identity
// stored before they existed still decodes.
func TestClaimsNeverStored(t *testing.T) {
	id := identity.Identity{Subject: "a", Claims: map[string]any{"secret_claim": "s"}, ExtraClaims: map[string]any{"department": "r"}}
	b, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "secret_claim") || !strings.Contains(string(b), `"extra_claims":{"department":"r"}`) {
		t.Fatalf("encoded %s", b)
	}
	var old identity.Identity
	if err := json.Unmarshal([]byte(`{"sub":"a","email":"a@example.com","groups":["g"]}`), &old); err != nil || old.ExtraClaims != nil || old.Subject != "a" {
		t.Fatalf("old format: %+v, %v", old, err)
	}
}

func TestReserved(t *testing.T) {
	for name, want := range map[string]bool{
		"iss": true, "sub": true, "aud": true, "exp": true, "nonce": true, "at_hash": true, "sid": true,
		"email": true, "groups": true, "client_id": true, "scope": true, "ext": true,
		"department": false, "roles": false, "tenant": false,
	} {
		if got := identity.Reserved(name); got != want {
			t.Errorf("Reserved(%q) = %v, want %v", name, got, want)
		}
	}
}
