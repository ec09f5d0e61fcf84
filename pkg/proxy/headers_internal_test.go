package proxy

import "testing"

// matches runs for every header of every proxied request: it must not
// allocate for names up to maxNormalisedKey bytes, in any spelling.
func TestMatchesDoesNotAllocate(t *testing.T) {
	p := newHeaderPolicy(DefaultHeaderNames(), []string{"Authorization"}, "X-MCP-Identity-Assertion")
	if !p.matches("X_Forwarded_User") || p.matches("Accept") {
		t.Fatal("matches does not recognise the spellings it must")
	}
	if n := testing.AllocsPerRun(1000, func() { _ = p.matches("X_Forwarded_User") }); n != 0 {
		t.Fatalf("matches allocates %v times per call", n)
	}
}
