package mcppolicy

import (
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/godeps"
)

// TestPureDecisionLogic keeps the package what it is meant to be: decision
// logic the HTTP guard adapts to, with no HTTP and no other package of this
// project (identities reach it as a Caller), so it can be tested and reused
// on its own.
func TestPureDecisionLogic(t *testing.T) {
	const self = "github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
	deps := godeps.Of(t, ".")
	var sawCEL bool
	for _, d := range deps {
		switch {
		case d == "net/http" || strings.HasPrefix(d, "net/http/"):
			t.Errorf("mcppolicy links %s", d)
		case strings.HasPrefix(d, "github.com/mcp-oidc-proxy/mcp-oidc-proxy/") && d != self:
			t.Errorf("mcppolicy links the project package %s", d)
		case d == "github.com/google/cel-go/cel":
			sawCEL = true
		}
	}
	// Guards the guard: the listing is this package's.
	if !sawCEL {
		t.Errorf("mcppolicy does not link cel-go; is this listing right? %d packages", len(deps))
	}
}
