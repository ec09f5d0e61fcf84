package authn

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
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
func (a *Authenticator) handleLogout(w http.ResponseWriter, r *http.Request) {
	noStore(w)
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
		if err := a.store.DeleteSession(r.Context(), t.ID()); err != nil {
			a.logFor(r.Context()).Error("delete session at logout", zap.String("session", shortID(t.ID())), zap.Error(err))
			writeStoreDown(w, r)
			return
		}
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
	writeJSON(w, http.StatusOK, logoutResponse{LoggedOut: true, EndSessionURL: endURL})
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
	writeJSON(w, http.StatusOK, info)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
