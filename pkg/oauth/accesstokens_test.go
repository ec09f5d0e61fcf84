package oauth_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
)

// revocations is a RevocationChecker with a fixed answer, for the branches
// the store cannot be made to take on demand.
type revocations struct {
	revoked bool
	err     error
}

func (r revocations) Revoked(context.Context, string, string) (bool, error) { return r.revoked, r.err }

// The resource server's validator for façade tokens accepts this server's
// access tokens for the expected issuer and resource, refuses revoked ones
// (from the store by default, or from whatever RevocationChecker is given),
// accepts a valid token when the revocation check cannot answer, and never
// takes another JWT signed with the same key for an access token.
func TestAccessTokenValidator(t *testing.T) {
	e := newMemEnv(t)
	id := e.registerPublic()
	verifier := oauth2.GenerateVerifier()
	resp, m := e.token(codeForm(id, e.code(id, verifier, "alice"), verifier))
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: %d %v", resp.StatusCode, m)
	}
	at := m["access_token"].(string)
	now := e.clock.Now()
	assertion, err := e.srvs[0].Signer().Sign(map[string]any{"iss": issuer, "aud": resource, "sub": "alice",
		"iat": now.Unix(), "exp": now.Unix() + 60, "jti": "a"})
	if err != nil {
		t.Fatal(err)
	}
	validate := func(rc oauth.RevocationChecker, raw string) error {
		v, err := e.srvs[0].AccessTokenValidator(oauth.AccessTokenOptions{Revocations: rc})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := v.Validate(t.Context(), raw, bearer.Expectation{Issuer: issuer, Audience: resource})
		if err == nil && tok.Subject != "alice" {
			t.Fatalf("subject %q, want alice", tok.Subject)
		}
		return err
	}
	tests := []struct {
		name    string
		rc      oauth.RevocationChecker
		raw     string
		wantErr bool
	}{
		{"store: not revoked", nil, at, false},
		{"revoked", revocations{revoked: true}, at, true},
		{"check unavailable: accepted", revocations{err: errors.New("store down")}, at, false},
		{"identity assertion", nil, assertion, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validate(tt.rc, tt.raw)
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, bearer.ErrInvalidToken)) {
				t.Fatalf("Validate: %v, want error %v (invalid token)", err, tt.wantErr)
			}
		})
	}
	resp, m = e.postForm(oauth.PathRevoke, url.Values{"token": {at}, "client_id": {id}})
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %d %v", resp.StatusCode, m)
	}
	if err := validate(nil, at); !errors.Is(err, bearer.ErrInvalidToken) || !strings.Contains(err.Error(), "token revoked") {
		t.Fatalf("revoked in the store: %v, want invalid token", err)
	}
}
