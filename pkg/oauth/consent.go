package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// consentRecord remembers that a user let a client act for them.
type consentRecord struct {
	Scopes    []string `json:"scopes"`
	Resources []string `json:"resources"`
}

func consentKey(subject, clientID string) string {
	return keyConsent + hashOf(subject) + ":" + hashOf(clientID)
}

func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	user := identity.FromContext(r.Context())
	if user == nil || user.Subject == "" {
		errorPage(w, r, http.StatusUnauthorized, errAccessDenied, "login required")
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.consentGet(w, r, user)
	case http.MethodPost:
		s.consentPost(w, r, user)
	default:
		w.Header().Set("Allow", "GET, POST")
		errorPage(w, r, http.StatusMethodNotAllowed, errInvalidRequest, "method not allowed")
	}
}

// loadRequest reads a pending request and checks it belongs to user.
func (s *Server) loadRequest(w http.ResponseWriter, r *http.Request, id string, user *identity.Identity) (*authRequest, bool) {
	var req authRequest
	err := s.getJSON(r.Context(), keyRequest+hashOf(id), &req)
	switch {
	case errors.Is(err, session.ErrNotFound):
		errorPage(w, r, http.StatusBadRequest, errInvalidRequest, "authorization request expired or unknown; start again from your application")
		return nil, false
	case err != nil:
		s.storeErr(w, r, "load authorization request", err)
		return nil, false
	case !s.now().Before(req.ExpiresAt):
		errorPage(w, r, http.StatusBadRequest, errInvalidRequest, "authorization request expired; start again from your application")
		return nil, false
	case req.Subject != "" && req.Subject != user.Subject:
		errorPage(w, r, http.StatusForbidden, errAccessDenied, "this authorization request belongs to another user")
		return nil, false
	}
	return &req, true
}

func (s *Server) consentGet(w http.ResponseWriter, r *http.Request, user *identity.Identity) {
	id := r.URL.Query().Get("request")
	req, ok := s.loadRequest(w, r, id, user)
	if !ok {
		return
	}
	client, err := s.lookupClient(r.Context(), req.ClientID, nil)
	if err != nil {
		if errors.Is(err, errUnknownClient) || errors.Is(err, errCIMD) {
			errorPage(w, r, http.StatusBadRequest, errInvalidClient, "client is no longer registered")
			return
		}
		s.storeErr(w, r, "lookup client", err)
		return
	}
	var rec consentRecord
	err = s.getJSON(r.Context(), consentKey(user.Subject, req.ClientID), &rec)
	switch {
	case err == nil && subset(req.Scopes, rec.Scopes) && slices.Contains(rec.Resources, req.Resource):
		s.finish(w, r, id, user, true, http.StatusFound)
		return
	case err != nil && !errors.Is(err, session.ErrNotFound):
		s.storeErr(w, r, "load consent", err)
		return
	}
	csrf := randomToken()
	req.Subject = user.Subject
	req.CSRFHash = hashOf(csrf)
	ttl := req.ExpiresAt.Sub(s.now())
	if err := s.putJSON(r.Context(), keyRequest+hashOf(id), req, ttl); err != nil {
		s.storeErr(w, r, "bind authorization request", err)
		return
	}
	name := client.Name
	if name == "" {
		name = client.ID
	}
	who := user.Email
	if who == "" {
		who = user.Subject
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self' "+formActionSource(req.RedirectURI))
	w.WriteHeader(http.StatusOK)
	_, err = io.WriteString(w, consentPage(consentView{
		ClientName:   name,
		Resource:     req.Resource,
		User:         who,
		RedirectHost: redirectHost(req.RedirectURI),
		Action:       PathConsent,
		RequestID:    id,
		CSRF:         csrf,
		Scopes:       req.Scopes,
	}))
	if err != nil {
		s.logFor(r.Context()).Warn("oauth: render consent page", zap.Error(err))
	}
}

// formActionSource lets the browser follow the post-consent redirect to the
// client (Chromium applies form-action to redirects after a form post).
func formActionSource(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil || u.Scheme == "" {
		return ""
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + ":"
}

func redirectHost(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI
	}
	if u.Host == "" {
		return u.Scheme + ":"
	}
	return u.Host
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func (s *Server) consentPost(w http.ResponseWriter, r *http.Request, user *identity.Identity) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		errorPage(w, r, http.StatusBadRequest, errInvalidRequest, "malformed form")
		return
	}
	id := r.PostForm.Get("request")
	req, ok := s.loadRequest(w, r, id, user)
	if !ok {
		return
	}
	if req.CSRFHash == "" || req.Subject != user.Subject || !equalHash(r.PostForm.Get("csrf"), req.CSRFHash) {
		errorPage(w, r, http.StatusForbidden, errAccessDenied, "invalid consent form token; reload the page")
		return
	}
	approve := r.PostForm.Get("action") == "approve"
	if approve {
		rec := consentRecord{Scopes: req.Scopes, Resources: []string{req.Resource}}
		var old consentRecord
		if err := s.getJSON(r.Context(), consentKey(user.Subject, req.ClientID), &old); err == nil {
			rec.Scopes = union(old.Scopes, rec.Scopes)
			rec.Resources = union(old.Resources, rec.Resources)
		}
		if err := s.putJSON(r.Context(), consentKey(user.Subject, req.ClientID), rec, s.opts.ConsentTTL); err != nil {
			s.storeErr(w, r, "store consent", err)
			return
		}
	}
	s.finish(w, r, id, user, approve, http.StatusSeeOther)
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// finish consumes the pending request (so a consent answer counts once) and
// redirects to the client with a code or access_denied.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, id string, user *identity.Identity, approve bool, status int) {
	ctx := r.Context()
	req, err := s.takeRequest(ctx, id)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			errorPage(w, r, http.StatusBadRequest, errInvalidRequest, "authorization request already answered")
			return
		}
		s.storeErr(w, r, "take authorization request", err)
		return
	}
	if !approve {
		s.logFor(r.Context()).Info("oauth: consent denied", zap.String("client_id", req.ClientID))
		redirectError(w, r, req.RedirectURI, req.State, req.Issuer, errAccessDenied, "the user denied the request")
		return
	}
	code, marker, err := s.newCredential(s.newFamily(ctx))
	if err != nil {
		s.logFor(ctx).Error("oauth: new authorization code", zap.Error(err))
		errorPage(w, r, http.StatusInternalServerError, errServerError, "could not issue an authorization code")
		return
	}
	grant := codeGrant{
		ClientID:           req.ClientID,
		RedirectURI:        req.RedirectURI,
		RedirectURIOmitted: req.RedirectURIOmitted,
		CodeChallenge:      req.CodeChallenge,
		Resource:           req.Resource,
		Scopes:             req.Scopes,
		Identity:           user,
		FamilyID:           randomToken(),
		ExpiresAt:          s.now().Add(s.opts.CodeTTL),
	}
	h := hashOf(code)
	if err := s.putJSON(ctx, keyCode+h, grant, s.opts.CodeTTL+codeReplayWindow); err != nil {
		s.storeErr(w, r, "store code", err)
		return
	}
	if err := s.store.PutOnce(ctx, keyCodeLive+h, marker, s.opts.CodeTTL); err != nil {
		s.storeErr(w, r, "store code marker", err)
		return
	}
	v := url.Values{"code": {code}, "iss": {req.Issuer}}
	if req.State != "" {
		v.Set("state", req.State)
	}
	redirectWith(w, r, req.RedirectURI, v, status)
}

func (s *Server) takeRequest(ctx context.Context, id string) (*authRequest, error) {
	b, err := s.store.TakeOnce(ctx, keyRequest+hashOf(id))
	if err != nil {
		return nil, err
	}
	var req authRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("oauth: decode authorization request: %w", err)
	}
	return &req, nil
}
