package oidcprovider_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

const callback = "http://127.0.0.1:9/oauth2/callback"

type discovery struct {
	Issuer             string   `json:"issuer"`
	AuthorizationURL   string   `json:"authorization_endpoint"`
	TokenURL           string   `json:"token_endpoint"`
	UserinfoURL        string   `json:"userinfo_endpoint"`
	EndSessionURL      string   `json:"end_session_endpoint"`
	CodeChallengeModes []string `json:"code_challenge_methods_supported"`
}

func discover(t *testing.T, p *oidcprovider.Provider) discovery {
	t.Helper()
	resp, err := http.Get(p.DiscoveryURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d discovery
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

func config(d discovery, secret string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     "rp",
		ClientSecret: secret,
		Endpoint:     oauth2.Endpoint{AuthURL: d.AuthorizationURL, TokenURL: d.TokenURL},
		RedirectURL:  callback,
		Scopes:       []string{"openid", "profile", "email", "offline_access"},
	}
}

// login runs the code flow with PKCE and returns the token.
func login(t *testing.T, p *oidcprovider.Provider, cfg *oauth2.Config) *oauth2.Token {
	t.Helper()
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n0nce"))
	cb, err := p.Login(ctx, nil, authURL)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != callback {
		t.Fatalf("callback = %q, want %q", got, callback)
	}
	if cb.Query().Get("state") != "st4te" || cb.Query().Get("code") == "" {
		t.Fatalf("callback query = %v", cb.Query())
	}
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return tok
}

func TestCodeFlowRefreshRotationAndRevocation(t *testing.T) {
	tests := []struct {
		name   string
		secret string
	}{
		{"confidential", "s3cret"},
		{"public", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := oidcprovider.Start(t, oidcprovider.Options{
				Clients:             []oidcprovider.Client{{ID: "rp", Secret: tt.secret, RedirectURIs: []string{"http://127.0.0.1:*/oauth2/callback"}}},
				AccessTokenLifetime: 2 * time.Second,
			})
			d := discover(t, p)
			if d.Issuer != p.Issuer() || d.EndSessionURL == "" || d.UserinfoURL == "" {
				t.Fatalf("discovery = %+v", d)
			}
			cfg := config(d, tt.secret)
			tok := login(t, p, cfg)
			if tok.RefreshToken == "" {
				t.Fatal("no refresh token")
			}
			if ttl := time.Until(tok.Expiry); ttl > 3*time.Second {
				t.Fatalf("access token lifetime %v, want about 2s", ttl)
			}
			idToken, _ := tok.Extra("id_token").(string)
			c := oidcprovider.TokenClaims(t, idToken)
			if c["sub"] != oidcprovider.DemoUserID || c["email"] != oidcprovider.DemoEmail || c["nonce"] != "n0nce" {
				t.Fatalf("claims = %v", c)
			}
			if groups, _ := c["groups"].([]any); len(groups) != 2 || groups[0] != "mcp-users" {
				t.Fatalf("groups = %v", c["groups"])
			}
			if p.TokenRequests() != 1 || p.RefreshRequests() != 0 {
				t.Fatalf("counters = %d/%d", p.TokenRequests(), p.RefreshRequests())
			}

			ctx := context.Background()
			refresh := func(rt string) (*oauth2.Token, error) {
				return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
			}
			rotated, err := refresh(tok.RefreshToken)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if rotated.RefreshToken == "" || rotated.RefreshToken == tok.RefreshToken {
				t.Fatalf("refresh token not rotated")
			}
			if _, ok := rotated.Extra("id_token").(string); !ok {
				t.Fatal("refresh returned no id_token")
			}
			if _, err := refresh(tok.RefreshToken); !isInvalidGrant(err) {
				t.Fatalf("reuse of old refresh token: %v, want invalid_grant", err)
			}
			p.RevokeRefreshTokens()
			if _, err := refresh(rotated.RefreshToken); !isInvalidGrant(err) {
				t.Fatalf("refresh after revocation: %v, want invalid_grant", err)
			}
			if p.TokenRequests() != 4 || p.RefreshRequests() != 3 {
				t.Fatalf("counters = %d/%d, want 4/3", p.TokenRequests(), p.RefreshRequests())
			}
		})
	}
}

func isInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}

func TestPKCEIsEnforced(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{
		Clients: []oidcprovider.Client{{ID: "rp", Secret: "s", RedirectURIs: []string{callback}}},
	})
	cfg := config(discover(t, p), "s")
	cb, err := p.Login(context.Background(), nil, cfg.AuthCodeURL("x", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
	if !isInvalidGrant(err) {
		t.Fatalf("exchange with wrong verifier: %v, want invalid_grant", err)
	}
}

func TestMinimalIDTokenAndUserinfo(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{
		Clients:        []oidcprovider.Client{{ID: "rp", Secret: "s", RedirectURIs: []string{callback}}},
		MinimalIDToken: true,
	})
	d := discover(t, p)
	cfg := config(d, "s")
	tok := login(t, p, cfg)
	idToken, _ := tok.Extra("id_token").(string)
	if c := oidcprovider.TokenClaims(t, idToken); c["email"] != nil || c["groups"] != nil {
		t.Fatalf("minimal id token carries profile claims: %v", c)
	}
	resp, err := cfg.Client(context.Background(), tok).Get(d.UserinfoURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	if info["sub"] != oidcprovider.DemoUserID || info["email"] != oidcprovider.DemoEmail || info["groups"] == nil {
		t.Fatalf("userinfo = %v", info)
	}
	if p.UserinfoRequests() != 1 {
		t.Fatalf("UserinfoRequests = %d", p.UserinfoRequests())
	}
}

func TestLoginErrors(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{})
	cfg := config(discover(t, p), oidcprovider.DefaultClientSecret)
	cfg.ClientID = oidcprovider.DefaultClientID
	authURL := cfg.AuthCodeURL("x", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))

	tests := []struct {
		name     string
		authURL  string
		password string
		wantErr  error
		wantCB   bool
	}{
		{"default client accepts any callback", authURL, oidcprovider.DemoPassword, nil, true},
		{"wrong password", authURL, "nope", oidcprovider.ErrLoginFailed, false},
		{"unknown redirect", strings.Replace(authURL, "oauth2%2Fcallback", "evil", 1), oidcprovider.DemoPassword, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := p.LoginAs(context.Background(), nil, tt.authURL, oidcprovider.DemoUsername, tt.password)
			switch {
			case tt.wantCB:
				if err != nil || cb.Query().Get("code") == "" {
					t.Fatalf("cb=%v err=%v", cb, err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			default:
				if err == nil {
					t.Fatalf("login succeeded with callback %v", cb)
				}
			}
		})
	}
}

func TestConcurrentRefreshWithOneTokenOnlyOneWins(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{
		Clients: []oidcprovider.Client{{ID: "rp", Secret: "s", RedirectURIs: []string{callback}}},
	})
	cfg := config(discover(t, p), "s")
	tok := login(t, p, cfg)

	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			errs <- err
		}()
	}
	ok, invalid := 0, 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			ok++
		case isInvalidGrant(err):
			invalid++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || invalid != n-1 {
		t.Fatalf("%d succeeded, %d invalid_grant; want 1 and %d", ok, invalid, n-1)
	}
	if p.RefreshRequests() != n {
		t.Fatalf("RefreshRequests = %d, want %d", p.RefreshRequests(), n)
	}
}

// TestDisableUserAndSetGroups: the knobs tests use to change a user's
// standing. New groups appear in the ID token a refresh returns; a disabled
// user's refresh token is refused with invalid_grant and they cannot log
// in again.
func TestDisableUserAndSetGroups(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{
		Clients: []oidcprovider.Client{{ID: "rp", Secret: "s3cret", RedirectURIs: []string{callback}}},
	})
	cfg := config(discover(t, p), "s3cret")
	tok := login(t, p, cfg)
	refresh := func(rt string) (*oauth2.Token, error) {
		return cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt}).Token()
	}

	p.SetGroups(oidcprovider.DemoUserID, []string{"contractors"})
	tok, err := refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	idt, _ := tok.Extra("id_token").(string)
	if got := fmt.Sprint(oidcprovider.TokenClaims(t, idt)["groups"]); got != "[contractors]" {
		t.Fatalf("groups in the refreshed ID token = %s, want [contractors]", got)
	}

	p.DisableUser(oidcprovider.DemoUserID)
	if _, err := refresh(tok.RefreshToken); !isInvalidGrant(err) {
		t.Fatalf("refresh for a disabled user: %v, want invalid_grant", err)
	}
	authURL := cfg.AuthCodeURL("st4te", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	if _, err := p.Login(context.Background(), nil, authURL); !errors.Is(err, oidcprovider.ErrLoginFailed) {
		t.Fatalf("login of a disabled user: %v, want ErrLoginFailed", err)
	}
}
