package tokenexchange

import (
	"errors"
	"math"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/headername"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// Middleware exchanges the request's subject token (Options.Subject) and
// forwards the request to next with the downstream token in
// Options.Header. Whatever the client sent in that header, in
// Authorization, or in any spelling of either (case, '_' for '-', which
// some servers treat alike), never reaches next: the client can neither
// pass its own token through nor inject a downstream token. When no token
// can be had, the request is answered 502 token_exchange_failed (503 while
// the session store is down) and next is not called.
func (e *Exchanger) Middleware(next http.Handler) http.Handler {
	authz := headername.Same(e.header, "Authorization")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headername.Delete(r.Header, e.header)
		if !authz {
			headername.Delete(r.Header, "Authorization")
		}
		subject, err := e.opts.Subject(r)
		var tok string
		if err == nil {
			tok, err = e.Token(r.Context(), subject)
		}
		if err != nil {
			e.fail(w, r, err)
			return
		}
		if authz {
			r.Header.Set("Authorization", "Bearer "+tok)
		} else {
			r.Header.Set(e.header, tok)
		}
		next.ServeHTTP(w, r)
	})
}

// fail answers a request that gets no downstream token. The message says
// what failed and what the caller can do, never a token or secret.
func (e *Exchanger) fail(w http.ResponseWriter, r *http.Request, err error) {
	log := requestid.Logger(r.Context(), e.log)
	switch {
	case errors.Is(err, ErrCacheUnavailable):
		log.Error("token exchange cache unavailable", zap.Error(err))
		apierror.WriteStoreDown(w, r, "the session store is temporarily unavailable, so the token for the downstream API cannot be looked up; retry shortly")
	case errors.Is(err, ErrFacadeCaller):
		log.Info("token exchange needs an identity provider token; the caller has a façade token")
		apierror.Write(w, r, http.StatusBadGateway, apierror.CodeTokenExchangeFailed,
			"this MCP server needs a token for "+e.opts.Audience+", obtained by token exchange at the identity provider, which needs the caller's identity provider token: "+
				"tokens issued by this proxy's OAuth authorization server cannot be exchanged; use a browser session or a client that gets its token from the identity provider (oauth.mode=external)")
	case errors.Is(err, ErrNoSubjectToken):
		log.Info("token exchange impossible: the caller has no identity provider token")
		apierror.Write(w, r, http.StatusBadGateway, apierror.CodeTokenExchangeFailed,
			"this MCP server needs a token for "+e.opts.Audience+", obtained by token exchange at the identity provider, but the request carries no identity provider token to exchange")
	case errors.Is(err, ErrExchangeFailed):
		msg := "the token exchange at the identity provider for a token for " + e.opts.Audience + " failed"
		var pe *ProviderError
		if errors.As(err, &pe) && pe.Code != "" {
			msg += " (" + pe.Code + ")"
		}
		if e.opts.FailureBackoff > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.opts.FailureBackoff.Seconds()))))
			msg += "; retry later"
		}
		apierror.Write(w, r, http.StatusBadGateway, apierror.CodeTokenExchangeFailed, msg)
	default:
		// The caller gave up waiting (its context ended).
		log.Debug("token exchange abandoned", zap.Error(err))
		apierror.Write(w, r, http.StatusBadGateway, apierror.CodeTokenExchangeFailed,
			"the token exchange at the identity provider did not finish before the request ended")
	}
}
