package oauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

// authRequest is a validated /authorize request waiting for the user's
// consent. It is stored under the hash of its id for RequestTTL.
type authRequest struct {
	ClientID    string `json:"client_id"`
	RedirectURI string `json:"redirect_uri"`
	// RedirectURIOmitted records that the client relied on its only
	// registered redirect URI; the token request then need not repeat it
	// (RFC 6749 4.1.3).
	RedirectURIOmitted bool      `json:"redirect_uri_omitted,omitempty"`
	State              string    `json:"state,omitempty"`
	CodeChallenge      string    `json:"code_challenge"`
	Resource           string    `json:"resource"`
	Scopes             []string  `json:"scopes"`
	Issuer             string    `json:"iss"`
	ExpiresAt          time.Time `json:"exp"`
	// Subject binds the request to the first user who opens the consent
	// page, so a consent link sent to someone else is useless.
	Subject string `json:"sub,omitempty"`
	// CSRFHash is the hash of the token embedded in the consent form.
	CSRFHash string `json:"csrf,omitempty"`
}

// codeGrant is what an authorization code stands for. It is kept (under the
// code's hash) for a while after redemption so a replay can be recognised
// and the tokens issued from it revoked; a separate single-use marker says
// whether it is still redeemable.
type codeGrant struct {
	ClientID           string             `json:"client_id"`
	RedirectURI        string             `json:"redirect_uri"`
	RedirectURIOmitted bool               `json:"redirect_uri_omitted,omitempty"`
	CodeChallenge      string             `json:"code_challenge"`
	Resource           string             `json:"resource"`
	Scopes             []string           `json:"scopes"`
	Identity           *identity.Identity `json:"identity"`
	FamilyID           string             `json:"family"`
	ExpiresAt          time.Time          `json:"exp"`
}

// redirectError sends an RFC 6749 §4.1.2.1 error to a validated redirect
// URI. Only for answers the user gave on the consent page: by then the user
// has logged in and seen which client, and which redirect host, asks.
func redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state, iss, code, description string) {
	v := url.Values{"error": {code}, "iss": {iss}}
	if description != "" {
		v.Set("error_description", description)
	}
	if state != "" {
		v.Set("state", state)
	}
	redirectWith(w, r, redirectURI, v, http.StatusFound)
}

func redirectWith(w http.ResponseWriter, r *http.Request, redirectURI string, v url.Values, status int) {
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, redirectURI+sep+v.Encode(), status)
}

// maxParamLen caps each /authorize parameter. The request is stored for an
// unauthenticated caller, so nothing in it may be unbounded: state is
// echoed back and stored verbatim (clients use 32-64 characters; some
// encode a little JSON), a client_id is a short registration ID or a
// metadata document URL, a redirect URI must equal a registered one.
func maxParamLen(param string) int {
	switch param {
	case "client_id":
		return maxClientIDLen
	case "redirect_uri":
		return maxRedirectURILen
	case "state":
		return MaxStateLen
	case "code_challenge":
		return 128
	case "scope":
		return maxScopeLen
	default: // response_type, code_challenge_method
		return 64
	}
}

// MaxStateLen is the longest state parameter /authorize accepts.
const MaxStateLen = 1024

// validPKCEChallenge accepts the 43-character base64url S256 output (and,
// leniently, up to 128 unreserved characters as RFC 7636 allows).
func validPKCEChallenge(c string) bool {
	if len(c) < 43 || len(c) > 128 {
		return false
	}
	for _, ch := range c {
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || strings.ContainsRune("-._~", ch)) {
			return false
		}
	}
	return true
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		errorPage(w, r, http.StatusMethodNotAllowed, errInvalidRequest, "method not allowed")
		return
	}
	// Every request that gets past here may store a pending request (and
	// fetch and cache a client metadata document) for someone who has not
	// logged in: limit it per client address first.
	if s.limited(w, r, s.opts.RequestLimiter, "authorization requests") {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		errorPage(w, r, http.StatusBadRequest, errInvalidRequest, "malformed request")
		return
	}
	q := r.Form
	for _, p := range []string{"client_id", "redirect_uri", "response_type", "state", "code_challenge", "code_challenge_method", "scope"} {
		if len(q[p]) > 1 {
			errorPage(w, r, http.StatusBadRequest, errInvalidRequest, "parameter "+p+" repeated")
			return
		}
		if limit := maxParamLen(p); len(q.Get(p)) > limit {
			errorPage(w, r, http.StatusBadRequest, errInvalidRequest, fmt.Sprintf("parameter %s is longer than %d characters", p, limit))
			return
		}
	}
	// The request was charged to its client address above.
	client, err := s.lookupClient(r.Context(), q.Get("client_id"), nil)
	switch {
	case errors.Is(err, errUnknownClient):
		errorPage(w, r, http.StatusBadRequest, errInvalidClient, "unknown client_id")
		return
	case errors.Is(err, errCIMD):
		s.logFor(r.Context()).Info("oauth: client metadata document refused", zap.String("client_id", q.Get("client_id")), zap.Error(err))
		errorPage(w, r, http.StatusBadRequest, errInvalidClient, "client metadata document could not be used")
		return
	case err != nil:
		s.storeErr(w, r, "lookup client", err)
		return
	}
	redirectURI := q.Get("redirect_uri")
	omitted := redirectURI == ""
	if omitted && len(client.RedirectURIs) == 1 {
		redirectURI = client.RedirectURIs[0]
	}
	if redirectURI == "" || !client.redirectAllowed(redirectURI) {
		errorPage(w, r, http.StatusBadRequest, errInvalidRequest, "redirect_uri is not registered for this client")
		return
	}
	// The redirect URI is registered, but anyone may register one: errors
	// stay on the proxy's page until the user has logged in and approved
	// the client (RFC 9700 §4.11.2). Only the consent step redirects.
	iss := s.issuer(r)
	state := q.Get("state")
	fail := func(code, desc string) { errorPage(w, r, http.StatusBadRequest, code, desc) }
	if q.Get("response_type") != "code" {
		fail(errUnsupportedRespType, "only response_type=code is supported")
		return
	}
	if !client.allows(grantAuthCode) {
		fail(errUnauthorizedClient, "client may not use the authorization code grant")
		return
	}
	challenge := q.Get("code_challenge")
	if !validPKCEChallenge(challenge) {
		fail(errInvalidRequest, "PKCE is required: send a valid S256 code_challenge")
		return
	}
	if q.Get("code_challenge_method") != "S256" {
		fail(errInvalidRequest, "code_challenge_method must be S256")
		return
	}
	resource, ok := s.pickResource(r, q["resource"], "")
	if !ok {
		fail(errInvalidTarget, "resource is not served by this authorization server")
		return
	}
	req := authRequest{
		ClientID:           client.ID,
		RedirectURI:        redirectURI,
		RedirectURIOmitted: omitted,
		State:              state,
		CodeChallenge:      challenge,
		Resource:           resource,
		Scopes:             s.narrowScopes(q.Get("scope")),
		Issuer:             iss,
		ExpiresAt:          s.now().Add(s.opts.RequestTTL),
	}
	id := randomToken()
	if err := s.putJSON(r.Context(), keyRequest+hashOf(id), req, s.opts.RequestTTL); err != nil {
		s.storeErr(w, r, "store authorization request", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, iss+PathConsent+"?"+url.Values{"request": {id}}.Encode(), http.StatusFound)
}

// pickResource applies RFC 8707: at most one resource, which must be one of
// ours. An omitted resource means bound (when narrowing a refresh) or the
// first configured resource (older clients do not send it). Comparison
// ignores one trailing slash, since clients differ in how they normalise
// the URL users type.
func (s *Server) pickResource(r *http.Request, requested []string, bound string) (string, bool) {
	if len(requested) > 1 {
		return "", false
	}
	allowed := s.opts.Resources(r)
	if bound != "" {
		allowed = []string{bound}
	}
	if len(requested) == 0 || requested[0] == "" {
		if len(allowed) == 0 {
			return "", false
		}
		return allowed[0], true
	}
	want := strings.TrimSuffix(requested[0], "/")
	for _, a := range allowed {
		if strings.TrimSuffix(a, "/") == want {
			return a, true
		}
	}
	return "", false
}

// narrowScopes keeps the requested scopes we offer (RFC 6749 §3.3 lets the
// server grant fewer); an empty request means every offered scope.
func (s *Server) narrowScopes(requested string) []string {
	if strings.TrimSpace(requested) == "" {
		return slices.Clone(s.opts.Scopes)
	}
	out := []string{}
	for _, sc := range strings.Fields(requested) {
		if slices.Contains(s.opts.Scopes, sc) && !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}
