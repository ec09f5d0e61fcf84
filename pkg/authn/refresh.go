package authn

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// refreshTimeout bounds the locked part of a refresh (reload, IdP call,
// store update). It runs detached from the request so that a client hanging
// up cannot abort a refresh-token rotation halfway, which would leave the
// session holding a refresh token the provider already retired.
const refreshTimeout = 30 * time.Second

// refreshPoll is how often a request waiting for another holder's refresh
// looks at the session again.
const refreshPoll = 20 * time.Millisecond

// errStore marks errors from the session store inside the refresh path, so
// that an expired token plus a store outage answers "store down".
var errStore = errors.New("session store")

// errRefreshBusy means another holder kept the refresh lock past RefreshWait.
var errRefreshBusy = errors.New("authn: refresh still in progress elsewhere")

func refreshLockName(id string) string { return "refresh:" + id }

// needsRefresh reports whether p's access token expires within the margin
// and can be renewed.
func (a *Authenticator) needsRefresh(p payload, now time.Time) bool {
	return p.RefreshToken != "" && !p.Expiry.IsZero() && p.Expiry.Sub(now) <= a.opts.RefreshBefore
}

// refreshedSince reports whether the stored session holds other tokens than
// the ones a request loaded, i.e. another request or replica refreshed it
// meanwhile. This, not needsRefresh, is what makes a waiter skip its own
// refresh: tokens that live no longer than RefreshBefore are due again
// right after a refresh, and every waiter would otherwise present the
// (rotated) refresh token once more.
func refreshedSince(loaded, stored payload) bool {
	return subtle.ConstantTimeCompare([]byte(loaded.AccessToken), []byte(stored.AccessToken)) != 1 ||
		subtle.ConstantTimeCompare([]byte(loaded.RefreshToken), []byte(stored.RefreshToken)) != 1
}

// refresh renews cur's tokens so that exactly one holder across all replicas
// talks to the provider: the holder of the refresh lock reloads the session
// (someone may have refreshed it already), refreshes and stores the result;
// everyone else waits for the stored result. It returns errSessionEnded
// when the provider refuses the refresh token (invalid_grant) or the session
// disappeared; any other error leaves the session untouched.
func (a *Authenticator) refresh(ctx context.Context, cur *current) (*current, error) {
	id := cur.ticket.ID()
	log := a.logFor(ctx)
	lock, err := a.locks.TryLock(ctx, refreshLockName(id), a.opts.RefreshLockTTL)
	if errors.Is(err, session.ErrLocked) {
		var waited *current
		waited, lock, err = a.waitForRefresh(ctx, cur)
		if waited != nil || err != nil {
			return waited, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("take refresh lock: %w: %w", errStore, err)
	}

	// From here on we hold the lock; work detached from the request.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	defer func() {
		if err := lock.Unlock(lctx); err != nil {
			log.Warn("release refresh lock", zap.String("session", shortID(id)), zap.Error(err))
		}
	}()

	latest, err := a.loadLatest(lctx, cur.ticket)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return nil, errSessionEnded
	case err != nil:
		return nil, fmt.Errorf("reload session before refresh: %w: %w", errStore, err)
	}
	if refreshedSince(cur.payload, latest.payload) || !a.needsRefresh(latest.payload, a.now()) {
		a.obs.RefreshOutcome(OutcomeShared)
		return latest, nil
	}

	tokens, err := a.refreshHoldingLock(lctx, lock, latest.payload.RefreshToken)
	if errors.Is(err, oidc.ErrInvalidGrant) {
		a.obs.RefreshOutcome(OutcomeInvalidGrant)
		log.Info("provider refused the refresh token; ending the session", zap.String("session", shortID(id)))
		if derr := a.sessions.DeleteSession(lctx, id); derr != nil {
			log.Warn("delete session after invalid_grant", zap.String("session", shortID(id)), zap.Error(derr))
		}
		return nil, errSessionEnded
	}
	if err != nil {
		a.obs.RefreshOutcome(OutcomeRefreshError)
		return nil, fmt.Errorf("refresh tokens: %w", err)
	}
	if tokens.Identity.Subject != "" && tokens.Identity.Subject != latest.payload.Identity.Subject {
		// A provider must never do this; do not let the session change hands.
		log.Error("refresh returned a different subject; ending the session", zap.String("session", shortID(id)))
		if derr := a.sessions.DeleteSession(lctx, id); derr != nil {
			log.Warn("delete session after subject change", zap.String("session", shortID(id)), zap.Error(derr))
		}
		return nil, errSessionEnded
	}

	next := *latest
	next.payload = mergeTokens(latest.payload, tokens)
	data, err := seal(cur.ticket, next.payload)
	if err != nil {
		return nil, err
	}
	next.rec.Data = data
	switch err := a.storeRefreshed(lctx, next.rec); {
	case errors.Is(err, session.ErrNotFound):
		// Logged out while we refreshed.
		return nil, errSessionEnded
	case err != nil:
		// The provider may have rotated the refresh token, which we now fail
		// to keep; still serve this request with the fresh access token.
		log.Error("store refreshed tokens", zap.String("session", shortID(id)), zap.Error(err))
	}
	a.obs.RefreshOutcome(OutcomeRefreshed)
	return &next, nil
}

// storeRefreshed writes the refreshed session, retrying store errors a few
// times while the lock is still held: the provider may just have rotated
// the refresh token, and losing the new one to a short store blip would
// make the next refresh present a retired token and end the session.
func (a *Authenticator) storeRefreshed(ctx context.Context, rec session.Record) error {
	err := a.sessions.UpdateSession(ctx, rec)
	for _, d := range [...]time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second} {
		if err == nil || errors.Is(err, session.ErrNotFound) {
			return err
		}
		a.logFor(ctx).Warn("store refreshed tokens; retrying", zap.String("session", shortID(rec.ID)), zap.Error(err))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		err = a.sessions.UpdateSession(ctx, rec)
	}
	return err
}

// waitForRefresh waits while another holder refreshes. It returns the
// session once its tokens were replaced (or are no longer due), or the lock if it becomes free while
// the session still needs a refresh (the other holder failed), or an error
// after RefreshWait.
func (a *Authenticator) waitForRefresh(ctx context.Context, cur *current) (*current, session.Lock, error) {
	id := cur.ticket.ID()
	deadline := time.NewTimer(a.opts.RefreshWait)
	defer deadline.Stop()
	tick := time.NewTicker(refreshPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("wait for refresh: %w", ctx.Err())
		case <-deadline.C:
			return nil, nil, errRefreshBusy
		case <-tick.C:
		}
		latest, err := a.loadLatest(ctx, cur.ticket)
		switch {
		case errors.Is(err, session.ErrNotFound):
			return nil, nil, errSessionEnded
		case err != nil:
			return nil, nil, fmt.Errorf("reload session while waiting for refresh: %w: %w", errStore, err)
		}
		if refreshedSince(cur.payload, latest.payload) || !a.needsRefresh(latest.payload, a.now()) {
			a.obs.RefreshOutcome(OutcomeShared)
			return latest, nil, nil
		}
		lock, err := a.locks.TryLock(ctx, refreshLockName(id), a.opts.RefreshLockTTL)
		switch {
		case errors.Is(err, session.ErrLocked):
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("take refresh lock: %w: %w", errStore, err)
		}
		return nil, lock, nil
	}
}

// refreshHoldingLock calls the provider while a goroutine keeps extending
// the lock, so a slow provider cannot let the lock lapse and a second
// holder present the same (rotating) refresh token.
func (a *Authenticator) refreshHoldingLock(ctx context.Context, lock session.Lock, refreshToken string) (*oidc.Tokens, error) {
	log := a.logFor(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(a.opts.RefreshLockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				err := lock.Extend(ctx, a.opts.RefreshLockTTL)
				switch {
				case err == nil:
				case errors.Is(err, session.ErrLocked):
					// Lost for good: the lock expired and may belong to
					// someone else now; extending cannot win it back.
					log.Warn("refresh lock lost while the provider was called", zap.Error(err))
					return
				default:
					// A store blip: keep trying on the next tick. Giving
					// up here would let the lock lapse while the token
					// request runs and a second holder present the same
					// rotating refresh token.
					log.Warn("extend refresh lock; retrying", zap.Error(err))
				}
			}
		}
	})
	tokens, err := a.rp.Refresh(ctx, refreshToken)
	close(done)
	wg.Wait()
	if err == nil && tokens == nil {
		err = errors.New("authn: provider returned no tokens")
	}
	return tokens, err
}

// mergeTokens applies a refresh result: providers may omit a new refresh
// token (no rotation), an ID token or claims, in which case the old ones
// stay.
func mergeTokens(p payload, t *oidc.Tokens) payload {
	p.AccessToken = t.AccessToken
	p.Expiry = t.Expiry
	if t.RefreshToken != "" {
		p.RefreshToken = t.RefreshToken
	}
	if t.IDToken != "" {
		p.IDToken = t.IDToken
	}
	if t.Identity.Subject != "" {
		p.Identity = identity.Refreshed(p.Identity, t.Identity)
	}
	return p
}

// refreshFailure decides what a failed (non-final) refresh means for the
// request: while the current access token is still valid the request goes
// on with it (the next request retries); once it has expired the caller
// gets a 503 — the session is kept, nothing is deleted.
func (a *Authenticator) refreshFailure(ctx context.Context, cur *current, err error) (*current, failure) {
	id := shortID(cur.ticket.ID())
	if a.now().Before(cur.payload.Expiry) {
		a.logFor(ctx).Warn("token refresh failed; continuing with the still-valid access token", zap.String("session", id), zap.Error(err))
		return cur, failNone
	}
	a.logFor(ctx).Error("token refresh failed and the access token has expired", zap.String("session", id), zap.Error(err))
	if errors.Is(err, errStore) {
		return nil, failStore
	}
	return nil, failProvider
}
