package authn

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// Hole 8: a logout must come from the proxy's own site. A cross-site
// navigation (a link or an <img> on another site) gets a confirmation page
// that POSTs, and the session survives; a POST from a foreign origin is
// refused.
func TestCrossSiteLogoutNeedsConfirmation(t *testing.T) {
	crossNav := http.Header{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Site": {"cross-site"}, "Accept": {"text/html"}}
	for _, tc := range []struct {
		name    string
		method  string
		header  http.Header
		confirm bool // a confirmation page instead of a logout
		refused int  // a refusal status instead of a logout
	}{
		{"cross-site navigation", "GET", crossNav, true, 0},
		{"same-site (sibling subdomain) navigation", "GET", http.Header{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Site": {"same-site"}}, true, 0},
		{"navigation without fetch metadata (old browser)", "GET", http.Header{"Accept": {"text/html"}}, true, 0},
		{"GET without any header (curl, <img>)", "GET", nil, true, 0},
		{"cross-site form POST", "POST", http.Header{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}, false, http.StatusForbidden},
		{"POST with a foreign origin only", "POST", http.Header{"Origin": {"https://evil.example"}}, false, http.StatusForbidden},
		{"POST with a null origin", "POST", http.Header{"Origin": {"null"}}, false, http.StatusForbidden},
		{"cross-site POST with a null origin", "POST", http.Header{"Origin": {"null"}, "Sec-Fetch-Site": {"cross-site"}}, false, http.StatusForbidden},
		{"same-origin POST with a null origin (no-referrer page)", "POST", http.Header{"Origin": {"null"}, "Sec-Fetch-Site": {"same-origin"}}, false, 0},
		{"POST, same-site sibling without origin", "POST", http.Header{"Sec-Fetch-Site": {"same-site"}}, false, http.StatusForbidden},
		{"same-origin navigation logs out", "GET", http.Header{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Site": {"same-origin"}}, false, 0},
		{"typed into the address bar logs out", "GET", http.Header{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Site": {"none"}}, false, 0},
		{"confirmed POST from the page logs out", "POST", http.Header{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Site": {"same-origin"}, "Origin": {"https://app.example"}}, false, 0},
		{"same-origin POST, origin with default port", "POST", http.Header{"Origin": {"https://app.example:443"}}, false, 0},
		{"API POST without browser headers logs out", "POST", nil, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.rp.endURL = "https://idp.example/logout"
			c := e.sessionCookie(t)
			tk, _ := e.codec.Decode(c.Value)
			resp := do(e.h, tc.method, LogoutPath, tc.header, c)
			body, _ := io.ReadAll(resp.Body)
			_, err := e.store.GetSession(context.Background(), tk.ID())
			if !tc.confirm && tc.refused == 0 {
				if !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("status %d: session still stored (%v), want logged out", resp.StatusCode, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("status %d: the session ended (%v); a cross-site request must not log the user out", resp.StatusCode, err)
			}
			if len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Errorf("cookies touched: %q", resp.Header.Values("Set-Cookie"))
			}
			if tc.refused != 0 {
				if resp.StatusCode != tc.refused {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.refused)
				}
				return
			}
			h := resp.Header
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") ||
				!strings.Contains(string(body), `method="post"`) || !strings.Contains(string(body), `action="logout"`) {
				t.Fatalf("status %d %q, want a confirmation page with a POST form:\n%s", resp.StatusCode, h.Get("Content-Type"), body)
			}
			if h.Get("Cache-Control") != "no-store" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" {
				t.Errorf("confirmation page headers: %v", h)
			}
		})
	}
}
