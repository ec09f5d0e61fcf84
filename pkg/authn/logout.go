package authn

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/httpjson"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/weborigin"
)

// logoutResponse is the JSON answer to a non-navigation logout.
type logoutResponse struct {
	LoggedOut     bool   `json:"logged_out"`
	EndSessionURL string `json:"end_session_url,omitempty"`
}

// handleLogout ends the session on every replica (it is deleted from the
// shared store), clears the cookie and, for browsers, continues to the
// provider's end_session_endpoint so the provider session ends too. If the
// store cannot delete the session the cookie is kept and the caller gets a
// 503: claiming a logout that did not happen would be worse.
//
// Only the proxy's own site may log a user out (logoutAllowed): another
// site's link gets a confirmation page that POSTs, and a POST from another
// origin is refused.
func (a *Authenticator) handleLogout(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	switch a.logoutAllowed(r) {
	case logoutConfirm:
		writeLogoutConfirmation(w)
		return
	case logoutRefuse:
		apierror.Write(w, r, http.StatusForbidden, apierror.CodeForbidden, "logout refused: it must come from this site (POST from its own origin)")
		return
	}
	var idToken string
	if t, f := a.ticketFromRequest(r); f == failNone {
		cur, err := a.load(r.Context(), t)
		switch {
		case err == nil:
			idToken = cur.payload.IDToken
		case errors.Is(err, session.ErrNotFound), errors.Is(err, errUnusable):
		default:
			a.logFor(r.Context()).Error("load session for logout", zap.Error(err))
			writeStoreDown(w, r)
			return
		}
		if err := a.sessions.DeleteSession(r.Context(), t.ID()); err != nil {
			a.logFor(r.Context()).Error("delete session at logout", zap.String("session", shortID(t.ID())), zap.Error(err))
			writeStoreDown(w, r)
			return
		}
		a.opened.forget(t.ID())
		a.logFor(r.Context()).Info("logout", zap.String("session", shortID(t.ID())))
	}
	a.clearSessionCookie(w)

	post := a.opts.PostLogoutRedirectURL
	endURL, ok := a.rp.EndSessionURL(idToken, post, "")
	if !ok {
		endURL = ""
	}
	if isLogoutNavigation(r) {
		target := endURL
		if target == "" {
			target = post
		}
		if target == "" {
			target = "/"
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	httpjson.Write(w, http.StatusOK, logoutResponse{LoggedOut: true, EndSessionURL: endURL})
}

// logoutVerdict is what handleLogout does with a request.
type logoutVerdict int

const (
	logoutProceed logoutVerdict = iota
	logoutConfirm               // show the confirmation page
	logoutRefuse                // 403
)

// logoutAllowed decides whether r may end the session, from Fetch Metadata
// and Origin, so that another site cannot log the user out (the session
// cookie is SameSite=Lax, which a top-level cross-site GET still carries):
//
//   - GET: only with Sec-Fetch-Site same-origin (a link on the proxy's own
//     pages) or none (typed, bookmarked). Anything else, including no Fetch
//     Metadata at all (old browsers, curl, an <img> in an old browser), gets
//     the confirmation page, which costs a legitimate user one click.
//   - POST: an Origin must be the proxy's own origin ("null" only with
//     Sec-Fetch-Site same-origin);
//     without Origin, Sec-Fetch-Site must be same-origin when present. A
//     POST with neither comes from a non-browser client (curl, scripts
//     holding the cookie themselves) and is accepted: every browser in
//     support sends Origin with a POST, and a cross-site POST would not
//     carry the SameSite=Lax cookie anyway.
func (a *Authenticator) logoutAllowed(r *http.Request) logoutVerdict {
	site := strings.ToLower(strings.TrimSpace(r.Header.Get("Sec-Fetch-Site")))
	if r.Method != http.MethodPost {
		if site == "same-origin" || site == "none" {
			return logoutProceed
		}
		return logoutConfirm
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if own := weborigin.Normalize(a.ownBaseURL(r)); own != "" && weborigin.Normalize(origin) == own {
			return logoutProceed
		}
		// Browsers send "null" from a page with Referrer-Policy:
		// no-referrer; Fetch Metadata still tells where it came from.
		if origin == "null" && site == "same-origin" {
			return logoutProceed
		}
		return logoutRefuse
	}
	if site != "" && site != "same-origin" {
		return logoutRefuse
	}
	return logoutProceed
}

// ownBaseURL is the proxy's external base URL for r: Options.BaseURL, or the
// callback URL (which is on the proxy) when that is not set.
func (a *Authenticator) ownBaseURL(r *http.Request) string {
	if a.opts.BaseURL != nil {
		return a.opts.BaseURL(r)
	}
	return a.opts.RedirectURL(r)
}

// logoutConfirmationPage asks before logging out. Its form posts to
// "logout", relative to /oauth2/logout, so it works under a path prefix too;
// the browser sends the proxy's own Origin with it.
const logoutConfirmationPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log out?</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}button{font-size:1rem;padding:.5rem 1rem}</style>
</head><body>
<h1>Log out?</h1>
<p>Another page asked to end your session. Log out only if you meant to.</p>
<form method="post" action="logout"><button type="submit">Log out</button></form>
</body></html>
`

// writeLogoutConfirmation serves the confirmation page: never cached, never
// framed (so it cannot be clickjacked into a logout), no scripts.
func writeLogoutConfirmation(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: the confirming POST then carries the
	// proxy's real Origin.
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, logoutConfirmationPage)
}

// sessionInfo is the JSON answer of the session endpoints.
type sessionInfo struct {
	Authenticated bool      `json:"authenticated"`
	User          userInfo  `json:"user"`
	ExpiresAt     time.Time `json:"expires_at"`
	IdleExpiresAt time.Time `json:"idle_expires_at,omitzero"`
}

type userInfo struct {
	Subject  string   `json:"sub"`
	Email    string   `json:"email,omitempty"`
	Name     string   `json:"name,omitempty"`
	Username string   `json:"preferred_username,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// handleSessionInfo tells a web UI who is logged in and until when. It is an
// API: no session is a 401 JSON, never a redirect.
func (a *Authenticator) handleSessionInfo(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	cur, f := a.authenticate(r)
	if f != failNone {
		a.reject(w, r, f, false)
		return
	}
	a.obs.AuthOutcome(Method, OutcomeOK)
	id := cur.payload.Identity
	info := sessionInfo{
		Authenticated: true,
		User: userInfo{
			Subject:  id.Subject,
			Email:    id.Email,
			Name:     id.Name,
			Username: id.Username,
			Groups:   id.Groups,
		},
		ExpiresAt: cur.payload.ExpiresAt.UTC(),
	}
	if a.opts.IdleTimeout > 0 {
		idle := a.now().Add(a.opts.IdleTimeout)
		if idle.After(cur.payload.ExpiresAt) {
			idle = cur.payload.ExpiresAt
		}
		info.IdleExpiresAt = idle.UTC()
	}
	httpjson.Write(w, http.StatusOK, info)
}
