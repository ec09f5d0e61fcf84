package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// payload is the session data sealed into Record.Data. It never travels in
// the cookie, so it may grow (tokens, groups) without touching cookie size.
type payload struct {
	Identity     identity.Identity `json:"identity"`
	AccessToken  string            `json:"access_token,omitempty"`
	RefreshToken string            `json:"refresh_token,omitempty"`
	IDToken      string            `json:"id_token,omitempty"`
	// Expiry is the access token's expiry; zero when the provider sent none.
	Expiry    time.Time `json:"expiry,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// current is a loaded, decrypted session.
type current struct {
	ticket  session.Ticket
	rec     session.Record
	payload payload
}

// failure is why a request has no usable session; it decides the response.
type failure int

const (
	failNone failure = iota
	// failNoSession: no cookie at all.
	failNoSession
	// failInvalid: a cookie we did not issue or cannot use; clear it.
	failInvalid
	// failEnded: the session is gone or was ended; clear the cookie.
	failEnded
	// failStore: the store is unreachable; keep everything, answer 503.
	failStore
	// failProvider: the token expired and the provider could not renew it.
	failProvider
)

// errSessionEnded is returned internally when a refresh proves the session
// cannot continue (invalid_grant) or it vanished meanwhile.
var errSessionEnded = errors.New("authn: session ended")

// Middleware authenticates requests by their session cookie and puts the
// identity into the request context for next. Requests without a usable
// session never reach next: browser navigations are sent to the provider to
// log in and come back; every other caller gets a JSON error. A session
// store outage answers 503 and leaves both the cookie and the session alone.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur, f := a.authenticate(r)
		if f != failNone {
			a.reject(w, r, f, true)
			return
		}
		a.obs.AuthOutcome(Method, OutcomeOK)
		id := cur.payload.Identity
		id.Method = Method
		// Rules read claims from Claims whatever the caller's kind; a
		// session's are the ones its login kept (policy.claims).
		id.Claims = id.ExtraClaims
		ctx := identity.NewContext(r.Context(), &id)
		ctx = context.WithValue(ctx, loginKey{}, upstreamLogin{
			refreshToken: cur.payload.RefreshToken,
			sessionEnds:  cur.payload.ExpiresAt,
			accessToken:  cur.payload.AccessToken,
		})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// reject answers a request without a usable session. loginRedirect allows
// starting a login for navigations (false for the session-info endpoint,
// which is always an API).
func (a *Authenticator) reject(w http.ResponseWriter, r *http.Request, f failure, loginRedirect bool) {
	switch f {
	case failStore:
		a.obs.AuthOutcome(Method, OutcomeStoreError)
		writeStoreDown(w, r)
		return
	case failProvider:
		a.obs.AuthOutcome(Method, OutcomeRefreshError)
		w.Header().Set("Retry-After", "5")
		apierror.Write(w, r, http.StatusServiceUnavailable, apierror.CodeUpstreamUnavailable,
			"the identity provider could not renew your session right now; your session is intact, retry shortly")
		return
	case failNoSession:
		a.obs.AuthOutcome(Method, OutcomeNoSession)
	case failInvalid:
		a.obs.AuthOutcome(Method, OutcomeInvalid)
		a.clearSessionCookie(w)
	case failEnded:
		a.obs.AuthOutcome(Method, OutcomeExpired)
		a.clearSessionCookie(w)
	}
	if loginRedirect && IsNavigation(r) {
		a.startLogin(w, r, r.URL.RequestURI())
		return
	}
	a.unauthed.ServeHTTP(w, r)
}

func defaultUnauthenticated(w http.ResponseWriter, r *http.Request) {
	apierror.Write(w, r, http.StatusUnauthorized, apierror.CodeUnauthenticated, "no valid session; log in first")
}

func writeStoreDown(w http.ResponseWriter, r *http.Request) {
	apierror.WriteStoreDown(w, r, "the session store is temporarily unavailable; your session is intact, retry shortly")
}

// authenticate loads the request's session and refreshes its tokens when
// they are about to expire. It may clear nothing itself; reject decides.
func (a *Authenticator) authenticate(r *http.Request) (*current, failure) {
	ticket, f := a.ticketFromRequest(r)
	if f != failNone {
		return nil, f
	}
	ctx := r.Context()
	cur, err := a.load(ctx, ticket)
	if err != nil {
		return nil, a.classify(ctx, ticket, err)
	}
	now := a.now()
	if !cur.payload.ExpiresAt.IsZero() && !now.Before(cur.payload.ExpiresAt) {
		// The store expires it too; this covers clock skew between replicas
		// and the store, and tests with an injected clock.
		if err := a.sessions.DeleteSession(ctx, ticket.ID()); err != nil {
			a.logFor(ctx).Warn("delete expired session", zap.String("session", shortID(ticket.ID())), zap.Error(err))
		}
		return nil, failEnded
	}
	if a.needsRefresh(cur.payload, now) {
		refreshed, err := a.refresh(ctx, cur)
		switch {
		case errors.Is(err, errSessionEnded):
			return nil, failEnded
		case err != nil:
			refreshed, f = a.refreshFailure(ctx, cur, err)
			if f != failNone {
				return nil, f
			}
		}
		cur = refreshed
	}
	return cur, failNone
}

// ticketFromRequest reads and authenticates the cookie.
func (a *Authenticator) ticketFromRequest(r *http.Request) (session.Ticket, failure) {
	c, err := r.Cookie(a.opts.CookieName)
	if err != nil || c.Value == "" {
		return session.Ticket{}, failNoSession
	}
	if len(c.Value) > a.opts.MaxCookieSize {
		return session.Ticket{}, failInvalid
	}
	t, err := a.codec.Decode(c.Value)
	if err != nil {
		return session.Ticket{}, failInvalid
	}
	return t, failNone
}

// load reads and decrypts the session of ticket.
func (a *Authenticator) load(ctx context.Context, t session.Ticket) (*current, error) {
	id := t.ID()
	rec, err := a.sessions.GetSession(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("load session: %w", err)
	}
	return a.open(t, id, rec)
}

// latestReader is implemented by a store that serves session reads from a
// local cache (pkg/sessioncache): its GetSessionFresh reads past the cache.
type latestReader interface {
	GetSessionFresh(ctx context.Context, id string) (session.Record, error)
}

// loadLatest is load for decisions that must see the latest write, not a
// cached copy up to the cache TTL old: the refresh path compares the stored
// tokens with the ones it holds, and a stale copy would make it present a
// refresh token another replica already rotated.
func (a *Authenticator) loadLatest(ctx context.Context, t session.Ticket) (*current, error) {
	lr, ok := a.sessions.(latestReader)
	if !ok {
		return a.load(ctx, t)
	}
	id := t.ID()
	rec, err := lr.GetSessionFresh(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("load session: %w", err)
	}
	return a.open(t, id, rec)
}

// open is openRecord through the decoded-session memo (opened); id is
// t.ID(), which the caller has already computed for the store.
func (a *Authenticator) open(t session.Ticket, id string, rec session.Record) (*current, error) {
	if p, ok := a.opened.get(id, t, rec.Data); ok {
		return &current{ticket: t, rec: rec, payload: p}, nil
	}
	cur, err := openRecord(t, rec)
	if err != nil {
		return nil, err
	}
	a.opened.put(id, t, rec.Data, cur.payload)
	return cur, nil
}

// openRecord decrypts a stored session record with its ticket.
func openRecord(t session.Ticket, rec session.Record) (*current, error) {
	plain, err := t.Open(rec.Data)
	if err != nil {
		return nil, fmt.Errorf("open session: %w", errUnusable)
	}
	var p payload
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, fmt.Errorf("decode session: %w", errUnusable)
	}
	return &current{ticket: t, rec: rec, payload: p}, nil
}

// errUnusable marks a stored session that exists but cannot be opened
// (tampered, or written under another secret): the user must log in again.
var errUnusable = errors.New("authn: stored session is unusable")

// classify maps a load error to a failure. Only ErrNotFound and an
// unusable record end the session; any other store error is an outage.
func (a *Authenticator) classify(ctx context.Context, t session.Ticket, err error) failure {
	switch {
	case errors.Is(err, session.ErrNotFound):
		a.opened.forget(t.ID())
		return failEnded
	case errors.Is(err, errUnusable):
		// Not deleted: during a rolling upgrade another replica may still
		// read it; it expires on its own.
		a.logFor(ctx).Warn("stored session cannot be opened", zap.String("session", shortID(t.ID())), zap.Error(err))
		return failInvalid
	default:
		a.logFor(ctx).Error("session store unavailable", zap.String("session", shortID(t.ID())), zap.Error(err))
		return failStore
	}
}

// shortID is a log-safe prefix of a storage ID (itself a hash of the secret
// cookie ID), enough to correlate log lines.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// seal encrypts p for the ticket.
func seal(t session.Ticket, p payload) ([]byte, error) {
	plain, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	data, err := t.Seal(plain)
	if err != nil {
		return nil, fmt.Errorf("seal session: %w", err)
	}
	return data, nil
}
