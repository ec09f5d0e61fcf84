package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestClientIdentityAssertionNeverReachesTheUpstream: with
// --oauth-identity-assertion, the MCP server gets exactly one
// X-MCP-Identity-Assertion, the proxy's, however the client spells its
// forged ones (an upstream stack that maps "_" to "-" would otherwise read
// X-MCP_Identity-Assertion as the assertion).
func TestClientIdentityAssertionNeverReachesTheUpstream(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.start(t, proxyOptions{args: []string{"--oauth-identity-assertion", "--session-cookie-secret", cookieSecret}})
	res := login(t, e.idp, p.URL, p.URL, "/")

	forged := http.Header{
		"X-MCP-Identity-Assertion": {"forged-1"},
		"X-MCP_Identity-Assertion": {"forged-2"},
		"x_mcp_identity_assertion": {"forged-3"},
	}
	r := do(t, http.MethodGet, p.URL+"/headers", res.Cookie, forged)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /headers = %s", r)
	}
	var seen http.Header
	if err := json.Unmarshal(r.Body, &seen); err != nil {
		t.Fatal(err)
	}
	var got []string
	for name, values := range seen {
		if strings.ReplaceAll(strings.ToLower(name), "_", "-") == "x-mcp-identity-assertion" {
			for _, v := range values {
				got = append(got, name+": "+v)
			}
		}
	}
	if len(got) != 1 || strings.Contains(got[0], "forged") || strings.Count(got[0], ".") != 2 {
		t.Fatalf("upstream saw assertion headers %q; want exactly the proxy's signed one", got)
	}
}
