package authz

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

func TestCheck(t *testing.T) {
	alice := &identity.Identity{Subject: "a", Email: "Alice@Example.com", Groups: []string{"dev", "ops"}}
	tests := []struct {
		name  string
		rules Rules
		id    *identity.Identity
		allow bool
	}{
		{"no rules", Rules{}, alice, true},
		{"no identity", Rules{}, nil, false},
		{"domain match, case-insensitive", Rules{AllowedEmailDomains: []string{"example.COM"}}, alice, true},
		{"domain with @", Rules{AllowedEmailDomains: []string{"@example.com"}}, alice, true},
		{"domain mismatch", Rules{AllowedEmailDomains: []string{"other.com"}}, alice, false},
		{"subdomain is not the domain", Rules{AllowedEmailDomains: []string{"ample.com"}}, alice, false},
		{"address match", Rules{AllowedEmails: []string{"alice@example.com"}}, alice, true},
		{"address or domain", Rules{AllowedEmails: []string{"bob@x.org"}, AllowedEmailDomains: []string{"example.com"}}, alice, true},
		{"no email with email rule", Rules{AllowedEmailDomains: []string{"example.com"}}, &identity.Identity{Subject: "x"}, false},
		{"group match", Rules{AllowedGroups: []string{"ops"}}, alice, true},
		{"group mismatch", Rules{AllowedGroups: []string{"admins"}}, alice, false},
		{"both rules must pass", Rules{AllowedGroups: []string{"admins"}, AllowedEmailDomains: []string{"example.com"}}, alice, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New(tt.rules).Check(tt.id)
			if (err == nil) != tt.allow {
				t.Fatalf("Check() error = %v, want allow=%v", err, tt.allow)
			}
		})
	}
}

func TestMiddlewareDeniesWithJSONAndSetReplacesRules(t *testing.T) {
	p := New(Rules{AllowedGroups: []string{"admins"}})
	h := p.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	req := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	req = req.WithContext(identity.NewContext(req.Context(), &identity.Identity{Subject: "u", Groups: []string{"dev"}}))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("status = %d, want 403", rec.Code)
	}
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != "forbidden" || body.Error.Message == "" {
		t.Fatalf("body = %s (err %v), want forbidden JSON with a reason", rec.Body, err)
	}

	p.Set(Rules{AllowedGroups: []string{"dev"}})
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("after Set, status = %d, want 204", rec.Code)
	}
}
