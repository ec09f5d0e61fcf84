package authn

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
)

// bigClaimValue is a claim value past oidc.MaxExtraClaimsBytes; it must
// never appear in a log line.
var bigClaimValue = "BIGVALUE-" + strings.Repeat("x", oidc.MaxExtraClaimsBytes)

// claimsEnv is one Authenticator over real Redis and a real OP whose demo
// user has further claims, with a handler that answers the caller's
// identity.Claims as JSON.
type claimsEnv struct {
	op    *oidcprovider.Provider
	rp    *oidc.RelyingParty
	a     *Authenticator
	h     http.Handler
	store session.Store
	codec *session.Codec
	logs  *observer.ObservedLogs
}

func newClaimsEnv(t *testing.T, userinfo bool, listed []string) *claimsEnv {
	t.Helper()
	op := oidcprovider.Start(t, oidcprovider.Options{
		MinimalIDToken: userinfo, // then the claims come from userinfo only
		Users: []oidcprovider.User{{
			ID: oidcprovider.DemoUserID, Username: oidcprovider.DemoUsername, Password: oidcprovider.DemoPassword,
			Email: oidcprovider.DemoEmail, EmailVerified: true, GivenName: "Demo", FamilyName: "User",
			Groups: oidcprovider.DemoGroups(),
			Claims: map[string]any{
				"department":  "research",
				"cost_center": 42,
				"projects":    []string{"apollo", "gemini"},
				"unlisted":    "not for rules",
				"big":         bigClaimValue,
			},
		}},
	})
	rs := redisserver.Start(t)
	store, err := session.NewRedis(session.RedisOptions{URL: rs.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	codec, err := session.NewCodec(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	rp, err := oidc.New(oidc.Options{
		Issuer:       op.Issuer(),
		ClientID:     oidcprovider.DefaultClientID,
		ClientSecret: oidcprovider.DefaultClientSecret,
		Scopes:       []string{"openid", "profile", "email", "offline_access"},
		UseUserInfo:  userinfo,
		ExtraClaims:  listed,
		Logger:       zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rp.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{
		Sessions: store, States: store, Locks: store, Codec: codec, RelyingParty: rp,
		Logger: zap.New(core), InsecureCookies: true,
		RedirectURL: func(*http.Request) string { return "http://app.test/oauth2/callback" },
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Register(mux)
	mux.Handle("/", a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := identity.FromContext(r.Context())
		_ = json.NewEncoder(w).Encode(id.Claims)
	})))
	return &claimsEnv{op: op, rp: rp, a: a, h: mux, store: store, codec: codec, logs: logs}
}

func (e *claimsEnv) login(t *testing.T) *http.Cookie {
	t.Helper()
	start := do(e.h, http.MethodGet, "/", navHeader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cb, err := e.op.Login(ctx, nil, start.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp := do(e.h, http.MethodGet, cb.RequestURI(), navHeader, cookieNamed(start, e.a.stateCk))
	ck := cookieNamed(resp, e.a.CookieName())
	if resp.StatusCode != http.StatusFound || ck == nil {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	return ck
}

// claimsOf is the identity.Claims a request with ck sees.
func (e *claimsEnv) claimsOf(t *testing.T, ck *http.Cookie) map[string]any {
	t.Helper()
	resp := do(e.h, http.MethodGet, "/x", nil, ck)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("request: %d %s", resp.StatusCode, body)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return got
}

// refresh makes the session's access token due and sends a request, which
// refreshes it at the provider.
func (e *claimsEnv) refresh(t *testing.T, ck *http.Cookie) map[string]any {
	t.Helper()
	before := e.op.RefreshRequests()
	setTokenExpiry(t, e.a, e.store, e.codec, ck, time.Now().Add(10*time.Second))
	got := e.claimsOf(t, ck)
	if e.op.RefreshRequests() != before+1 {
		t.Fatalf("refreshes at the provider: %d, want %d", e.op.RefreshRequests(), before+1)
	}
	return got
}

func TestCookieSessionKeepsListedClaims(t *testing.T) {
	for _, tc := range []struct {
		name     string
		userinfo bool
	}{
		{"from the ID token", false},
		{"from userinfo", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// "big" does not fit, "iss" and "email" are reserved, "absent"
			// is not sent: none of them is kept.
			e := newClaimsEnv(t, tc.userinfo, []string{"department", "iss", "email", "big", "cost_center", "projects", "absent"})
			ck := e.login(t)
			want := map[string]any{"department": "research", "cost_center": float64(42), "projects": []any{"apollo", "gemini"}}
			if got := e.claimsOf(t, ck); !reflect.DeepEqual(got, want) {
				t.Fatalf("claims = %v, want %v", got, want)
			}
			// The session stores them; the old shape without the field
			// still loads (TestOldSessionPayloadLoads).
			_, p := storedPayloadOf(t, e.a, e.codec, ck)
			if !reflect.DeepEqual(p.Identity.ExtraClaims, want) || p.Identity.Claims != nil {
				t.Fatalf("stored identity: extra %v, claims %v", p.Identity.ExtraClaims, p.Identity.Claims)
			}

			dropped := e.logs.FilterMessageSnippet("too large to keep").All()
			if len(dropped) != 1 || dropped[0].Level != zapcore.WarnLevel || dropped[0].ContextMap()["claim"] != "big" {
				t.Fatalf("size cap warnings: %v", dropped)
			}
			for _, l := range e.logs.All() {
				if line, _ := json.Marshal(l.ContextMap()); strings.Contains(l.Message+string(line), "BIGVALUE") {
					t.Fatalf("a log line carries the dropped claim's value: %s %s", l.Message, line)
				}
			}
		})
	}
}

func TestCookieSessionClaimsFollowRefreshAndReload(t *testing.T) {
	e := newClaimsEnv(t, false, []string{"department", "cost_center"})
	ck := e.login(t)
	if got := e.claimsOf(t, ck); !reflect.DeepEqual(got, map[string]any{"department": "research", "cost_center": float64(42)}) {
		t.Fatalf("after login: %v", got)
	}

	// A newly listed claim: the session keeps what it had until its next
	// token refresh, which reads the current list.
	e.rp.SetExtraClaims([]string{"department", "cost_center", "projects"})
	if got := e.claimsOf(t, ck); len(got) != 2 {
		t.Fatalf("claims changed without a refresh: %v", got)
	}
	// The provider changes the department and stops sending cost_center:
	// the refresh takes the claims as sent, so cost_center is gone (fail
	// closed, like groups).
	e.op.SetClaims(oidcprovider.DemoUserID, map[string]any{"department": "sales", "projects": []string{"apollo"}})
	want := map[string]any{"department": "sales", "projects": []any{"apollo"}}
	if got := e.refresh(t, ck); !reflect.DeepEqual(got, want) {
		t.Fatalf("after refresh: %v, want %v", got, want)
	}
	// Stored, so the next request (decoded afresh or from the memo) and
	// every replica see the refreshed claims.
	if got := e.claimsOf(t, ck); !reflect.DeepEqual(got, want) {
		t.Fatalf("next request: %v, want %v", got, want)
	}
	_, p := storedPayloadOf(t, e.a, e.codec, ck)
	if !reflect.DeepEqual(p.Identity.ExtraClaims, want) {
		t.Fatalf("stored: %v", p.Identity.ExtraClaims)
	}

	// Unlisting everything: the next refresh keeps nothing.
	e.rp.SetExtraClaims(nil)
	if got := e.refresh(t, ck); got != nil {
		t.Fatalf("after unlisting: %v", got)
	}
}

// TestOldSessionPayloadLoads stores a session in the format written before
// extra claims existed (no extra_claims field) and uses it.
func TestOldSessionPayloadLoads(t *testing.T) {
	e := newClaimsEnv(t, false, []string{"department"})
	tk, err := e.codec.NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old := `{"identity":{"sub":"old-user","email":"old@example.com","email_verified":true,"groups":["mcp-users"]},` +
		`"access_token":"at","refresh_token":"rt","id_token":"idt","expiry":"` + now.Add(time.Hour).Format(time.RFC3339Nano) + `",` +
		`"created_at":"` + now.Format(time.RFC3339Nano) + `","expires_at":"` + now.Add(time.Hour).Format(time.RFC3339Nano) + `"}`
	var p payload
	if err := json.Unmarshal([]byte(old), &p); err != nil {
		t.Fatalf("old payload does not decode: %v", err)
	}
	if p.Identity.Subject != "old-user" || p.Identity.ExtraClaims != nil || !reflect.DeepEqual(p.Identity.Groups, []string{"mcp-users"}) {
		t.Fatalf("old payload decoded as %+v", p.Identity)
	}
	data, err := tk.Seal([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateSession(context.Background(), session.Record{
		ID: tk.ID(), UserKey: session.UserKey("old-user"), Data: data,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour,
	}, session.Limit{}); err != nil {
		t.Fatal(err)
	}
	ck := &http.Cookie{Name: e.a.CookieName(), Value: e.codec.Encode(tk)}
	if got := e.claimsOf(t, ck); got != nil {
		t.Fatalf("an old session has claims %v", got)
	}
}
