package oauth

import (
	"strings"
	"testing"
	"time"
)

// TestRevokedLookupAllocatesNothing: the bearer path asks on every request.
func TestRevokedLookupAllocatesNothing(t *testing.T) {
	s := NewRevokedSet(nil, RevokedSetOptions{})
	jti, family := strings.Repeat("j", 43), strings.Repeat("f", 43)
	s.put(familyMember(family), time.Now().Add(time.Hour))
	s.loaded.Store(true)
	tests := []struct {
		name        string
		jti, family string
		want        bool
	}{
		{"revoked family", jti, family, true},
		{"clean token", jti, strings.Repeat("g", 43), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, known := s.Revoked(tc.jti, tc.family); got != tc.want || !known {
				t.Fatalf("Revoked = %v, %v; want %v, true", got, known, tc.want)
			}
			if n := testing.AllocsPerRun(100, func() { s.Revoked(tc.jti, tc.family) }); n != 0 {
				t.Errorf("Revoked allocates %v times per call, want 0", n)
			}
		})
	}
}
