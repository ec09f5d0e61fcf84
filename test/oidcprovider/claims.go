package oidcprovider

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TokenClaims decodes the payload of a JWT the provider (or the proxy)
// issued, without verifying it: tests read what a token says after the
// code under test has verified it, or to check what was issued.
func TokenClaims(tb testing.TB, jwt string) map[string]any {
	tb.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a JWT (%d parts)", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatalf("JWT payload: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		tb.Fatalf("JWT payload: %v", err)
	}
	return c
}
