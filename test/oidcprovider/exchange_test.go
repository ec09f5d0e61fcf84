package oidcprovider_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// exchange posts an RFC 8693 token exchange with client_secret_basic and
// returns the status and the decoded JSON answer.
func exchange(t *testing.T, tokenURL, secret, subjectToken, subjectType, audience string) (int, map[string]any) {
	t.Helper()
	form := url.Values{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {subjectToken},
		"subject_token_type":   {subjectType},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":             {audience},
		"scope":                {"orders.read orders.write"},
	}
	req, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("rp", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode exchange answer (status %d): %v", resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

func TestTokenExchange(t *testing.T) {
	const accessType = "urn:ietf:params:oauth:token-type:access_token"
	tests := []struct {
		name string
		// jwtAccessTokens makes the login's access token a JWT (external
		// mode's case); otherwise it is opaque (a cookie session's case).
		jwtAccessTokens bool
		audience        string
		subjectToken    func(accessToken string) string
		wantStatus      int
		wantError       string
	}{
		{name: "opaque subject token", audience: "https://orders.example", wantStatus: http.StatusOK},
		{name: "JWT subject token", jwtAccessTokens: true, audience: "https://orders.example", wantStatus: http.StatusOK},
		{name: "audience not allowed", audience: "https://payroll.example", wantStatus: http.StatusBadRequest, wantError: "invalid_target"},
		{name: "forged subject token", audience: "https://orders.example", subjectToken: func(string) string { return "forged" },
			wantStatus: http.StatusBadRequest, wantError: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := oidcprovider.Options{
				Clients:                []oidcprovider.Client{{ID: "rp", Secret: "s3cret", RedirectURIs: []string{"http://127.0.0.1:*/oauth2/callback"}}},
				TokenExchangeAudiences: []string{"https://orders.example"},
			}
			if tt.jwtAccessTokens {
				opts.AccessTokenAudience = []string{"https://mcp.example"}
			}
			p := oidcprovider.Start(t, opts)
			d := discover(t, p)
			tok := login(t, p, config(d, "s3cret"))
			subject := tok.AccessToken
			if tt.subjectToken != nil {
				subject = tt.subjectToken(subject)
			}
			status, body := exchange(t, d.TokenURL, "s3cret", subject, accessType, tt.audience)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d (answer %v)", status, tt.wantStatus, body["error"])
			}
			if p.TokenExchangeRequests() != 1 {
				t.Fatalf("TokenExchangeRequests = %d, want 1", p.TokenExchangeRequests())
			}
			if tt.wantError != "" {
				if body["error"] != tt.wantError {
					t.Fatalf("error = %v, want %s", body["error"], tt.wantError)
				}
				return
			}
			if body["issued_token_type"] != accessType || body["token_type"] != "Bearer" {
				t.Fatalf("issued_token_type %v, token_type %v", body["issued_token_type"], body["token_type"])
			}
			if exp, _ := body["expires_in"].(float64); exp <= 0 {
				t.Fatalf("expires_in = %v", body["expires_in"])
			}
			access, _ := body["access_token"].(string)
			c := oidcprovider.TokenClaims(t, access)
			if c["sub"] != oidcprovider.DemoUserID || c["iss"] != p.Issuer() || c["scope"] != "orders.read orders.write" {
				t.Fatalf("exchanged token claims = %v", c)
			}
			if aud, _ := c["aud"].([]any); len(aud) != 1 || aud[0] != tt.audience {
				t.Fatalf("aud = %v, want [%s]", c["aud"], tt.audience)
			}
		})
	}
}

func TestTokenExchangeRefusesDisabledUser(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{
		Clients: []oidcprovider.Client{{ID: "rp", Secret: "s3cret", RedirectURIs: []string{"http://127.0.0.1:*/oauth2/callback"}}},
	})
	d := discover(t, p)
	tok := login(t, p, config(d, "s3cret"))
	p.DisableUser(oidcprovider.DemoUserID)
	status, body := exchange(t, d.TokenURL, "s3cret", tok.AccessToken, "urn:ietf:params:oauth:token-type:access_token", "https://any.example")
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("status %d error %v, want 400 invalid_grant", status, body["error"])
	}
}
