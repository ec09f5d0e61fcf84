package authz

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

func TestCheck(t *testing.T) {
	alice := &identity.Identity{Subject: "a", Email: "Alice@Example.com", EmailVerified: true, Groups: []string{"dev", "ops"}}
	unverified := &identity.Identity{Subject: "m", Email: "alice@example.com", Groups: []string{"dev", "ops"}}
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
		{"unverified address, domain rule", Rules{AllowedEmailDomains: []string{"example.com"}}, unverified, false},
		{"unverified address, address rule", Rules{AllowedEmails: []string{"alice@example.com"}}, unverified, false},
		{"unverified address allowed by switch", Rules{AllowedEmailDomains: []string{"example.com"}, AllowUnverifiedEmail: true}, unverified, true},
		{"unverified address, no e-mail rule", Rules{AllowedGroups: []string{"ops"}}, unverified, true},
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

func TestRequiredClaims(t *testing.T) {
	bearer := &identity.Identity{Subject: "a", Email: "a@example.com", Claims: map[string]any{
		"tenant":    "acme",
		"roles":     []any{"reader", "writer"},
		"mfa":       true,
		"level":     float64(3),
		"nested":    []any{[]any{"x"}},
		"empty_str": "",
	}}
	cookie := &identity.Identity{Subject: "c", Email: "c@example.com", EmailVerified: true, Groups: []string{"ops"}}
	tests := []struct {
		name   string
		claims map[string]string
		id     *identity.Identity
		allow  bool
	}{
		{"string match", map[string]string{"tenant": "acme"}, bearer, true},
		{"string mismatch", map[string]string{"tenant": "evil"}, bearer, false},
		{"array membership", map[string]string{"roles": "writer"}, bearer, true},
		{"array non-member", map[string]string{"roles": "admin"}, bearer, false},
		{"bool", map[string]string{"mfa": "true"}, bearer, true},
		{"bool mismatch", map[string]string{"mfa": "false"}, bearer, false},
		{"number", map[string]string{"level": "3"}, bearer, true},
		{"nested arrays do not match", map[string]string{"nested": "x"}, bearer, false},
		{"empty string never matches", map[string]string{"empty_str": ""}, bearer, false},
		{"missing claim", map[string]string{"department": "eng"}, bearer, false},
		{"all must hold", map[string]string{"tenant": "acme", "roles": "admin"}, bearer, false},
		{"cookie: standard field", map[string]string{"email_verified": "true", "groups": "ops"}, cookie, true},
		{"cookie: raw claim unavailable", map[string]string{"tenant": "acme"}, cookie, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New(Rules{RequiredClaims: tt.claims}).Check(tt.id)
			if (err == nil) != tt.allow {
				t.Fatalf("Check() error = %v, want allow=%v", err, tt.allow)
			}
		})
	}
}

func TestSetCopiesRequiredClaims(t *testing.T) {
	claims := map[string]string{"tenant": "acme"}
	p := New(Rules{RequiredClaims: claims})
	claims["tenant"] = "evil"
	id := &identity.Identity{Subject: "a", Claims: map[string]any{"tenant": "acme"}}
	if err := p.Check(id); err != nil {
		t.Fatalf("caller's later map change leaked into the policy: %v", err)
	}
}

// TestCheckAllocatesNothingOnAPass: Check runs on every request, so passing
// every kind of rule (e-mail, group, required claims from the raw claims and
// from the standard fields) allocates nothing.
func TestCheckAllocatesNothingOnAPass(t *testing.T) {
	p := New(Rules{
		AllowedEmailDomains: []string{"example.com"},
		AllowedGroups:       []string{"ops"},
		RequiredClaims:      map[string]string{"tenant": "t1", "sub": "a", "groups": "dev"},
	})
	id := &identity.Identity{Subject: "a", Email: "alice@example.com", EmailVerified: true, Groups: []string{"dev", "ops"},
		Claims: map[string]any{"tenant": "t1"}}
	if err := p.Check(id); err != nil {
		t.Fatalf("Check = %v, want a pass", err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = p.Check(id) }); n != 0 {
		t.Fatalf("a passing Check allocates %.0f times, want 0", n)
	}
}
