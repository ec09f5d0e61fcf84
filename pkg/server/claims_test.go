package server

import (
	"slices"
	"testing"
)

// policy.claims reaches the relying party that builds every session's and
// façade grant's identity, and a reload replaces the list in place.
func TestPolicyClaimsReachTheRelyingParty(t *testing.T) {
	srv := facadeServerWith(t, "http://127.0.0.1:1", "--policy-claims", "department,cost_center")
	if got := srv.rp.ExtraClaims(); !slices.Equal(got, []string{"department", "cost_center"}) {
		t.Fatalf("at start: %v", got)
	}
	cfg := srv.cfg
	cfg.Policy.Claims = []string{"team"}
	srv.Apply(cfg)
	if got := srv.rp.ExtraClaims(); !slices.Equal(got, []string{"team"}) {
		t.Fatalf("after reload: %v", got)
	}
}
