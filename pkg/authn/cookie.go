package authn

import (
	"net/http"
	"time"
)

// sessionCookie is the cookie carrying the ticket. HttpOnly keeps it away
// from scripts; SameSite=Lax keeps it off cross-site subrequests and POSTs
// while still sending it on the top-level navigation back from the provider.
func (a *Authenticator) sessionCookie(value string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{
		Name:     a.opts.CookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		HttpOnly: true,
		Secure:   !a.opts.InsecureCookies,
		SameSite: http.SameSiteLaxMode,
	}
}

func (a *Authenticator) setSessionCookie(w http.ResponseWriter, value string) {
	http.SetCookie(w, a.sessionCookie(value, a.opts.SessionTTL))
}

func (a *Authenticator) clearSessionCookie(w http.ResponseWriter) {
	c := a.sessionCookie("", 0)
	c.MaxAge = -1
	http.SetCookie(w, c)
}

// stateCookie binds a login to the browser that started it: it holds the
// hash of the state, never the state itself.
func (a *Authenticator) stateCookie(value string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{
		Name:     a.stateCk,
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		HttpOnly: true,
		Secure:   !a.opts.InsecureCookies,
		SameSite: http.SameSiteLaxMode,
	}
}

func (a *Authenticator) clearStateCookie(w http.ResponseWriter) {
	c := a.stateCookie("", 0)
	c.MaxAge = -1
	http.SetCookie(w, c)
}
