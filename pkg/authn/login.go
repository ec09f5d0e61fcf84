package authn

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/ratelimit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/returnurl"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// stateKeyPrefix namespaces login state in the store's single-use values.
const stateKeyPrefix = "oauth-state:"

// maxStateParam bounds the state parameter we hash; ours are 43 bytes.
const maxStateParam = 256

// maxReturnURL and maxCallbackURL bound what a login state stores for a
// caller who has not logged in yet.
const (
	maxReturnURL   = 2048
	maxCallbackURL = 2048
)

// loginState is what a started login leaves server-side, keyed by the hash
// of the state, so the callback can land on any replica and be used once.
type loginState struct {
	Nonce       string    `json:"nonce"`
	Verifier    string    `json:"verifier"`
	ReturnURL   string    `json:"return_url"`
	RedirectURL string    `json:"redirect_url"`
	CreatedAt   time.Time `json:"created_at"`
}

// hashState is the store key suffix and the state cookie value: the state
// itself never leaves the browser-provider round trip.
func hashState(state string) string {
	sum := sha256.Sum256([]byte(state))
	return hex.EncodeToString(sum[:])
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// handleStart begins a login explicitly: GET /oauth2/start?rd=/path.
func (a *Authenticator) handleStart(w http.ResponseWriter, r *http.Request) {
	rd := r.URL.Query().Get("rd")
	if len(rd) > maxReturnURL {
		apierror.Write(w, r, http.StatusBadRequest, apierror.CodeBadRequest, fmt.Sprintf("rd is longer than %d characters", maxReturnURL))
		return
	}
	a.startLogin(w, r, rd)
}

// startLogin stores state, nonce, PKCE verifier and the validated return URL
// server-side, binds the login to this browser with a state cookie and
// redirects to the provider. Logins are limited per client address: each
// one stores state for someone who has not logged in, and every stored
// field is bounded (a return URL that is too long falls back to "/", like
// any other unusable one).
func (a *Authenticator) startLogin(w http.ResponseWriter, r *http.Request, returnTo string) {
	if ok, wait := a.opts.Limiter.Allow(a.opts.ClientAddr(r)); !ok {
		// Debug: every refused request of a flood would otherwise add a line.
		a.logFor(r.Context()).Debug("login rate limited", zap.Stringer("client_addr", a.opts.ClientAddr(r)))
		ratelimit.SetRetryAfter(w.Header(), wait)
		apierror.Write(w, r, http.StatusTooManyRequests, apierror.CodeRateLimited, "too many logins started from your address; retry later")
		return
	}
	callback := a.opts.RedirectURL(r)
	if len(callback) > maxCallbackURL {
		apierror.Write(w, r, http.StatusBadRequest, apierror.CodeBadRequest, "the request's host is too long to build the login callback URL")
		return
	}
	if err := a.rp.Reachable(r.Context()); err != nil {
		// Sending the browser to a provider that cannot answer strands
		// the user on a browser error page, and the code could not be
		// redeemed anyway: say so here, with a retry hint.
		a.logFor(r.Context()).Warn("identity provider unreachable; not starting a login", zap.Error(err))
		writeProviderDown(w, r)
		return
	}
	rd, _ := returnurl.Validate(returnTo)
	state, err := randomToken()
	if err != nil {
		a.internalError(w, r, "start login", err)
		return
	}
	nonce, err := randomToken()
	if err != nil {
		a.internalError(w, r, "start login", err)
		return
	}
	ls := loginState{
		Nonce:       nonce,
		Verifier:    oauth2.GenerateVerifier(),
		ReturnURL:   rd,
		RedirectURL: callback,
		CreatedAt:   a.now(),
	}
	authURL, err := a.rp.AuthCodeURL(state, ls.Nonce, ls.Verifier, ls.RedirectURL)
	if err != nil {
		a.logFor(r.Context()).Error("build authorization URL", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		apierror.Write(w, r, http.StatusServiceUnavailable, apierror.CodeUpstreamUnavailable, "the identity provider is not available; retry shortly")
		return
	}
	value, err := json.Marshal(ls)
	if err != nil {
		a.internalError(w, r, "encode login state", err)
		return
	}
	h := hashState(state)
	if err := a.states.PutOnce(r.Context(), stateKeyPrefix+h, value, a.opts.StateTTL); err != nil {
		a.logFor(r.Context()).Error("store login state", zap.Error(err))
		writeStoreDown(w, r)
		return
	}
	http.SetCookie(w, a.stateCookie(h, a.opts.StateTTL))
	noStore(w)
	http.Redirect(w, r, authURL, http.StatusFound)
}

// handleCallback finishes a login: it checks that the state was issued to
// this browser and is used once, exchanges the code, creates a brand new
// session (never reusing the ID the browser came with) and returns the user
// to where the login started. Each step answers the request itself when
// the login cannot go on, and reports whether it may.
//
// The state cookie is cleared only once the login it belongs to is over
// (consumed or unknown). A forged callback must not break the login in
// progress, and a store outage must leave the browser able to retry the
// same callback once the store is back.
func (a *Authenticator) handleCallback(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	q := r.URL.Query()
	if q.Get("error") != "" {
		a.providerRefused(w, r, q)
		return
	}
	ls, ok := a.takeLoginState(w, r, q.Get("state"))
	if !ok {
		return
	}
	code := q.Get("code")
	if code == "" {
		a.badState(w, r, "the callback carries no authorization code")
		return
	}
	tokens, ok := a.exchangeCode(w, r, code, ls)
	if !ok {
		return
	}
	// No session fixation: whatever session the browser had is ended and a
	// fresh ticket is issued.
	a.endPreviousSession(r)
	ticket, ok := a.createSession(w, r, tokens)
	if !ok {
		return
	}
	a.setSessionCookie(w, a.codec.Encode(ticket))
	rd, _ := returnurl.Validate(ls.ReturnURL)
	http.Redirect(w, r, rd, http.StatusFound)
}

// providerRefused answers a callback carrying the provider's error: the
// login is over, so its state is consumed (whatever the outcome) and its
// cookie cleared, and the provider's reason is passed on, sanitized.
func (a *Authenticator) providerRefused(w http.ResponseWriter, r *http.Request, q url.Values) {
	a.clearStateCookie(w)
	if state := q.Get("state"); state != "" && len(state) <= maxStateParam {
		if _, err := a.states.TakeOnce(r.Context(), stateKeyPrefix+hashState(state)); err != nil && !errors.Is(err, session.ErrNotFound) {
			a.logFor(r.Context()).Warn("discard login state after provider error", zap.Error(err))
		}
	}
	a.obs.LoginOutcome(OutcomeProviderErr)
	code, desc := sanitize(q.Get("error"), 64), sanitize(q.Get("error_description"), 200)
	a.logFor(r.Context()).Info("provider returned a login error", zap.String("error", code), zap.String("description", desc))
	msg := "the identity provider refused the login: " + code
	if desc != "" {
		msg += ": " + desc
	}
	apierror.Write(w, r, providerErrorStatus(code), apierror.CodeLoginFailed, msg)
}

// providerErrorStatus is 401 for the provider's errors that mean the user
// did not (or could not) log in, 400 for the others (a broken request).
func providerErrorStatus(code string) int {
	switch code {
	case "access_denied", "login_required", "consent_required", "interaction_required":
		return http.StatusUnauthorized
	default:
		return http.StatusBadRequest
	}
}

// takeLoginState checks that state was issued to this browser (its hash is
// in the state cookie) and consumes it from the store, so a callback is
// accepted once, on whichever replica it lands.
func (a *Authenticator) takeLoginState(w http.ResponseWriter, r *http.Request, state string) (loginState, bool) {
	if state == "" || len(state) > maxStateParam {
		a.badState(w, r, "login state is missing or malformed")
		return loginState{}, false
	}
	h := hashState(state)
	ck, err := r.Cookie(a.stateCk)
	if err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(h)) != 1 {
		a.badState(w, r, "this login was not started in this browser; start again")
		return loginState{}, false
	}
	raw, err := a.states.TakeOnce(r.Context(), stateKeyPrefix+h)
	switch {
	case errors.Is(err, session.ErrNotFound):
		a.clearStateCookie(w)
		a.badState(w, r, "login state is unknown, expired or already used")
		return loginState{}, false
	case err != nil:
		a.logFor(r.Context()).Error("take login state", zap.Error(err))
		a.obs.LoginOutcome(OutcomeStoreError)
		writeStoreDown(w, r)
		return loginState{}, false
	}
	a.clearStateCookie(w)
	var ls loginState
	if err := json.Unmarshal(raw, &ls); err != nil {
		a.badState(w, r, "login state is unknown, expired or already used")
		return loginState{}, false
	}
	return ls, true
}

// exchangeCode redeems the authorization code with the login's verifier
// and nonce. A refused code, an unreachable provider and any other failure
// get distinct answers; none of them redirects.
func (a *Authenticator) exchangeCode(w http.ResponseWriter, r *http.Request, code string, ls loginState) (*oidc.Tokens, bool) {
	tokens, err := a.rp.Exchange(r.Context(), code, ls.Verifier, ls.Nonce, ls.RedirectURL)
	switch {
	case err != nil:
		a.obs.LoginOutcome(OutcomeExchangeErr)
		a.logFor(r.Context()).Warn("exchange authorization code", zap.Error(err))
		switch {
		case errors.Is(err, oidc.ErrInvalidGrant):
			apierror.Write(w, r, http.StatusUnauthorized, apierror.CodeLoginFailed, "the authorization code was rejected; start the login again")
		case errors.Is(err, oidc.ErrUnreachable):
			writeProviderDown(w, r)
		default:
			apierror.Write(w, r, http.StatusBadGateway, apierror.CodeLoginFailed, "could not complete the login with the identity provider")
		}
		return nil, false
	case tokens == nil || tokens.Identity.Subject == "":
		a.obs.LoginOutcome(OutcomeExchangeErr)
		apierror.Write(w, r, http.StatusBadGateway, apierror.CodeLoginFailed, "the identity provider returned no subject")
		return nil, false
	}
	return tokens, true
}

// endPreviousSession deletes the session the browser came with, if any. A
// failure is only logged: the session expires by itself and the new one
// does not depend on it.
func (a *Authenticator) endPreviousSession(r *http.Request) {
	old, f := a.ticketFromRequest(r)
	if f != failNone {
		return
	}
	if err := a.sessions.DeleteSession(r.Context(), old.ID()); err != nil {
		a.logFor(r.Context()).Warn("delete previous session at login", zap.String("session", shortID(old.ID())), zap.Error(err))
	}
}

// createSession stores a new session for tokens under a fresh ticket,
// applying the per-user limit.
func (a *Authenticator) createSession(w http.ResponseWriter, r *http.Request, tokens *oidc.Tokens) (session.Ticket, bool) {
	ticket, err := a.codec.NewTicket()
	if err != nil {
		a.internalError(w, r, "new session ticket", err)
		return session.Ticket{}, false
	}
	now := a.now()
	p := payload{
		Identity:     tokens.Identity,
		AccessToken:  tokens.AccessToken,
		RefreshToken: tokens.RefreshToken,
		IDToken:      tokens.IDToken,
		Expiry:       tokens.Expiry,
		CreatedAt:    now,
		ExpiresAt:    now.Add(a.opts.SessionTTL),
	}
	p.Identity.Method = ""
	data, err := seal(ticket, p)
	if err != nil {
		a.internalError(w, r, "seal session", err)
		return session.Ticket{}, false
	}
	user := session.UserKey(p.Identity.Subject)
	evicted, err := a.sessions.CreateSession(r.Context(), session.Record{
		ID:          ticket.ID(),
		UserKey:     user,
		Data:        data,
		CreatedAt:   now,
		ExpiresAt:   p.ExpiresAt,
		IdleTimeout: a.opts.IdleTimeout,
	}, a.opts.Limit)
	switch {
	case errors.Is(err, session.ErrLimitReached):
		a.obs.LoginOutcome(OutcomeLimit)
		apierror.Write(w, r, http.StatusForbidden, apierror.CodeForbidden, "too many active sessions for this user; log out elsewhere first")
		return session.Ticket{}, false
	case err != nil:
		a.logFor(r.Context()).Error("create session", zap.Error(err))
		a.obs.LoginOutcome(OutcomeStoreError)
		writeStoreDown(w, r)
		return session.Ticket{}, false
	}
	if len(evicted) > 0 {
		a.logFor(r.Context()).Info("evicted older sessions of the user", zap.Int("count", len(evicted)))
	}
	a.obs.LoginOutcome(OutcomeOK)
	a.logFor(r.Context()).Info("login", zap.String("session", shortID(ticket.ID())), zap.String("user", shortID(user)))
	return ticket, true
}

// writeProviderDown answers a login that cannot proceed because the
// provider is unreachable: 503 with a retry hint, never a redirect, so a
// browser cannot loop between the proxy and a dead provider.
func writeProviderDown(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	apierror.Write(w, r, http.StatusServiceUnavailable, apierror.CodeUpstreamUnavailable,
		"the identity provider cannot be reached right now; log in again shortly")
}

func (a *Authenticator) badState(w http.ResponseWriter, r *http.Request, msg string) {
	a.obs.LoginOutcome(OutcomeBadState)
	apierror.Write(w, r, http.StatusBadRequest, apierror.CodeBadRequest, msg)
}

func (a *Authenticator) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	a.logFor(r.Context()).Error(what, zap.Error(err))
	apierror.Write(w, r, http.StatusInternalServerError, apierror.CodeInternal, "internal error")
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
}

// sanitize makes a provider-supplied string safe to echo in a message and a
// log: printable characters only, bounded length.
func sanitize(s string, limit int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= limit {
			b.WriteString("…")
			break
		}
		if unicode.IsPrint(r) && r != '<' && r != '>' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
