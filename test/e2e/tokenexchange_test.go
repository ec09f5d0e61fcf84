package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

const downstreamAudience = "https://orders.example"

// TestTokenExchangeEndToEnd: with token exchange on, the MCP server
// receives a token the provider issued for the downstream audience, for a
// cookie caller and for an external-mode bearer caller, and never the
// client's own token; a refused exchange is a 502 JSON error that is not
// retried against the provider within the backoff.
func TestTokenExchangeEndToEnd(t *testing.T) {
	opts := externalIDP([]string{externalResource})
	opts.TokenExchangeAudiences = []string{downstreamAudience}
	e := newEnv(t, envOptions{redis: true, idp: opts})
	exchange := []string{"--token-exchange-enabled", "--token-exchange-audience", downstreamAudience, "--token-exchange-scopes", "orders.read"}

	assertExchanged := func(t *testing.T, tok, clientToken string) {
		t.Helper()
		if tok == "" {
			t.Fatal("the MCP server received no X-Downstream-Token")
		}
		if clientToken != "" && tok == clientToken {
			t.Fatal("the MCP server received the client's own token")
		}
		c := oidcprovider.TokenClaims(t, tok)
		if aud := audiences(c); !slices.Equal(aud, []string{downstreamAudience}) {
			t.Errorf("exchanged token aud = %v, want [%s]", aud, downstreamAudience)
		}
		if c["sub"] != oidcprovider.DemoUserID {
			t.Errorf("exchanged token sub = %v, want %s", c["sub"], oidcprovider.DemoUserID)
		}
	}

	t.Run("cookie caller", func(t *testing.T) {
		r := e.start(t, proxyOptions{args: exchange})
		cookie := loginAs(t, e.idp, r.URL, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
		before := e.idp.TokenExchangeRequests()
		cs := sdkSession(t, r.URL+"/mcp", cookie, "")
		who := whoami(t, cs)
		assertExchanged(t, who.Headers["X-Downstream-Token"], "")
		if len(who.Leaked) > 0 {
			t.Errorf("credentials reached the MCP server: %v", who.Leaked)
		}
		// Every request of the session after the first is served from the
		// cache shared through Redis.
		if again := whoami(t, cs); again.Headers["X-Downstream-Token"] != who.Headers["X-Downstream-Token"] {
			t.Error("the second call got a different exchanged token: the cache was not used")
		}
		if n := e.idp.TokenExchangeRequests() - before; n != 1 {
			t.Errorf("%d exchanges at the provider for one session (connect and two calls), want 1", n)
		}
		if s := r.Logs.String(); containsAny(s, who.Headers["X-Downstream-Token"], cookie.Value) {
			t.Error("the logs contain the exchanged token or the session cookie")
		}
	})

	t.Run("external bearer caller", func(t *testing.T) {
		r := e.start(t, proxyOptions{args: append([]string{"--oauth-mode", "external", "--external-url", externalBase}, exchange...)})
		demo := providerToken(t, e.idp, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
		cs, err := staticSession(t, r.URL, demo, nil)
		if err != nil {
			t.Fatalf("SDK client with the provider's token: %v", err)
		}
		who := whoami(t, cs)
		assertExchanged(t, who.Headers["X-Downstream-Token"], demo)
		if len(who.Leaked) > 0 {
			t.Errorf("credentials reached the MCP server: %v", who.Leaked)
		}
	})

	t.Run("refused exchange", func(t *testing.T) {
		r := e.start(t, proxyOptions{args: append(exchange, "--token-exchange-audience", "https://unknown.example")})
		cookie := loginAs(t, e.idp, r.URL, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
		before := e.idp.TokenExchangeRequests()
		for range 2 {
			got := rawMCP(t, r.URL+"/mcp", cookie, initializeBody, nil)
			if got.Status != http.StatusBadGateway {
				t.Fatalf("refused exchange: %s, want 502", got)
			}
			if e := decodeError(t, got); e.Error.Code != "token_exchange_failed" {
				t.Errorf("error code %q, want token_exchange_failed", e.Error.Code)
			}
		}
		if n := e.idp.TokenExchangeRequests() - before; n != 1 {
			t.Errorf("%d exchanges at the provider for two requests within the backoff, want 1", n)
		}
	})
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if x != "" && strings.Contains(s, x) {
			return true
		}
	}
	return false
}
