package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidateTokenExchange(t *testing.T) {
	enabled := func() Config {
		c := validOIDC()
		c.TokenExchange.Enabled = true
		c.TokenExchange.Audience = "https://orders.example"
		c.TokenExchange.Scopes = []string{"orders.read", "orders:write"}
		return c
	}
	tests := []struct {
		name     string
		mutate   func(*TokenExchangeConfig)
		want     []string
		contains string
	}{
		{name: "valid"},
		{name: "valid with Authorization and an endpoint", mutate: func(c *TokenExchangeConfig) {
			c.Header, c.Endpoint = "Authorization", "https://idp.example/oauth/token"
		}},
		{name: "disabled: nothing checked", mutate: func(c *TokenExchangeConfig) {
			*c = TokenExchangeConfig{Header: "Host", ExpiryMargin: -1}
		}},
		{name: "no audience", mutate: func(c *TokenExchangeConfig) { c.Audience = "" },
			want: []string{"token_exchange.audience"}, contains: "MCP_OIDC_PROXY_TOKEN_EXCHANGE_AUDIENCE"},
		{name: "two audiences", mutate: func(c *TokenExchangeConfig) { c.Audience = "a b" },
			want: []string{"token_exchange.audience"}},
		{name: "bad scope", mutate: func(c *TokenExchangeConfig) { c.Scopes = []string{"ok", `a"b`, ""} },
			want: []string{"token_exchange.scopes"}},
		{name: "no header", mutate: func(c *TokenExchangeConfig) { c.Header = "" },
			want: []string{"token_exchange.header"}},
		{name: "invalid header", mutate: func(c *TokenExchangeConfig) { c.Header = "X Token" },
			want: []string{"token_exchange.header"}},
		{name: "reserved header", mutate: func(c *TokenExchangeConfig) { c.Header = "x-forwarded_user" },
			want: []string{"token_exchange.header"}, contains: "X-Downstream-Token"},
		{name: "MCP header", mutate: func(c *TokenExchangeConfig) { c.Header = "Mcp-Session-Id" },
			want: []string{"token_exchange.header"}},
		{name: "bad endpoint", mutate: func(c *TokenExchangeConfig) { c.Endpoint = "idp.example/token" },
			want: []string{"token_exchange.endpoint"}},
		{name: "negative durations", mutate: func(c *TokenExchangeConfig) { c.ExpiryMargin, c.FailureBackoff = -time.Second, -time.Second },
			want: []string{"token_exchange.expiry_margin", "token_exchange.failure_backoff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := enabled()
			if tt.mutate != nil {
				tt.mutate(&c.TokenExchange)
			}
			err := c.Validate()
			if got := errorPaths(t, err); !slices.Equal(got, tt.want) {
				t.Fatalf("error paths %v, want %v (err: %v)", got, tt.want, err)
			}
			if tt.contains != "" {
				if fe := mustFieldError(t, err, tt.want[0]); !strings.Contains(fe.Error(), tt.contains) {
					t.Fatalf("%q does not contain %q", fe, tt.contains)
				}
			}
		})
	}
}

// TestValidateTokenExchangeFit: token exchange needs the OIDC login, and its
// header must not be one that carries the caller's identity.
func TestValidateTokenExchangeFit(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{name: "fits"},
		{name: "original preset identity header", mutate: func(c *Config) { c.TokenExchange.Header = "x-user-email" },
			want: []string{"token_exchange.header"}},
		{name: "custom identity header", mutate: func(c *Config) {
			c.Headers.User, c.TokenExchange.Header = "X-Remote-User", "X_Remote_User"
		}, want: []string{"token_exchange.header"}},
		{name: "bypass", mutate: func(c *Config) { c.AuthMode, c.AllowInsecureBypass = "bypass", true },
			want: []string{"token_exchange.enabled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validOIDC()
			c.TokenExchange.Enabled, c.TokenExchange.Audience = true, "https://orders.example"
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			if got := errorPaths(t, c.Validate()); !slices.Equal(got, tt.want) {
				t.Fatalf("error paths %v, want %v", got, tt.want)
			}
		})
	}
}
