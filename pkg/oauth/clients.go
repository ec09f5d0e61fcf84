package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/httpjson"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// Token endpoint authentication methods.
const (
	authNone  = "none"
	authBasic = "client_secret_basic"
	authPost  = "client_secret_post"
)

const (
	grantAuthCode = "authorization_code"
	grantRefresh  = "refresh_token"
)

func supportedGrants() []string { return []string{grantAuthCode, grantRefresh} }

// Bounds on client metadata (registrations and metadata documents).
// Registration is anonymous, so everything a registration stores is capped
// and over-long values are refused rather than cut: a client learns what
// is wrong instead of getting a registration that differs from its request.
const (
	// maxRegistrationBytes bounds a registration request body.
	maxRegistrationBytes = 16 << 10
	// maxRedirectURIs: real clients register one to three.
	maxRedirectURIs = 10
	// maxRedirectURILen bounds one redirect URI.
	maxRedirectURILen = 1024
	maxClientNameLen  = 200
	maxClientURILen   = 500
	maxScopeLen       = 1024
	// maxListLen bounds grant_types and response_types.
	maxListLen = 10
)

// Client is a registered (RFC 7591) or metadata-document client.
type Client struct {
	ID           string   `json:"client_id"`
	SecretHash   string   `json:"secret_hash,omitempty"`
	AuthMethod   string   `json:"token_endpoint_auth_method"`
	RedirectURIs []string `json:"redirect_uris"`
	GrantTypes   []string `json:"grant_types"`
	Name         string   `json:"client_name,omitempty"`
	URI          string   `json:"client_uri,omitempty"`
	Scope        string   `json:"scope,omitempty"`
	IssuedAt     int64    `json:"client_id_issued_at,omitempty"`
	// FromDocument marks a client ID metadata document client (client_id is
	// an https URL); such clients are never stored as registrations.
	FromDocument bool `json:"from_document,omitempty"`
}

func (c *Client) public() bool { return c.AuthMethod == authNone }

func (c *Client) allows(grant string) bool { return slices.Contains(c.GrantTypes, grant) }

// registrationRequest is the RFC 7591 client metadata we read.
type registrationRequest struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name"`
	ClientURI               string   `json:"client_uri"`
	Scope                   string   `json:"scope"`
}

// registrationResponse is the RFC 7591 §3.2.1 answer.
type registrationResponse struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeOAuthError(w, http.StatusMethodNotAllowed, errInvalidRequest, "method not allowed")
		return
	}
	if s.limited(w, r, s.opts.RegistrationLimiter, "registrations") {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeOAuthError(w, http.StatusBadRequest, errInvalidClientMetadata, "registration must be application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegistrationBytes))
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, errInvalidClientMetadata, "registration body too large or unreadable")
		return
	}
	var req registrationRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeOAuthError(w, http.StatusBadRequest, errInvalidClientMetadata, "registration body is not valid client metadata JSON")
		return
	}
	client, secret, code, err := s.newClient(req)
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, code, err.Error())
		return
	}
	// Until a token is issued to it (touchClient), a registration lives
	// only UnusedClientTTL: anonymous registrations nobody uses must not
	// fill the store for months.
	if err := s.putJSON(r.Context(), keyClient+client.ID, client, s.opts.UnusedClientTTL); err != nil {
		s.storeErr(w, r, "register client", err)
		return
	}
	s.logFor(r.Context()).Info("oauth: client registered", zap.String("client_id", client.ID),
		zap.String("client_name", client.Name), zap.String("auth_method", client.AuthMethod),
		zap.Strings("redirect_uris", client.RedirectURIs))
	resp := registrationResponse{
		ClientID:                client.ID,
		ClientSecret:            secret,
		ClientIDIssuedAt:        client.IssuedAt,
		RedirectURIs:            client.RedirectURIs,
		TokenEndpointAuthMethod: client.AuthMethod,
		GrantTypes:              client.GrantTypes,
		ResponseTypes:           []string{"code"},
		ClientName:              client.Name,
		ClientURI:               client.URI,
		Scope:                   client.Scope,
	}
	if secret != "" {
		never := int64(0)
		resp.ClientSecretExpiresAt = &never
	}
	httpjson.Write(w, http.StatusCreated, resp)
}

// newClient validates registration metadata. It returns the client, the
// plain secret (confidential clients only; returned once, stored hashed) and
// an RFC 7591 error code with the error.
func (s *Server) newClient(req registrationRequest) (*Client, string, string, error) {
	if err := validateRedirectURIs(req.RedirectURIs); err != nil {
		return nil, "", errInvalidRedirectURI, err
	}
	if err := validateMetadataSizes(req); err != nil {
		return nil, "", errInvalidClientMetadata, err
	}
	method := req.TokenEndpointAuthMethod
	if method == "" {
		method = authBasic // RFC 7591 §2 default
	}
	if !slices.Contains([]string{authNone, authBasic, authPost}, method) {
		return nil, "", errInvalidClientMetadata, fmt.Errorf("token_endpoint_auth_method %q is not supported", method)
	}
	if len(req.ResponseTypes) > 0 && !slices.Contains(req.ResponseTypes, "code") {
		return nil, "", errInvalidClientMetadata, errors.New(`response_types must include "code"`)
	}
	// Narrow rather than refuse: some clients ask for grants (implicit,
	// client_credentials, device_code) we do not offer; the response tells
	// them what they got.
	grants := []string{}
	for _, g := range req.GrantTypes {
		if slices.Contains(supportedGrants(), g) && !slices.Contains(grants, g) {
			grants = append(grants, g)
		}
	}
	if len(req.GrantTypes) == 0 {
		grants = supportedGrants()
	}
	if !slices.Contains(grants, grantAuthCode) {
		grants = append([]string{grantAuthCode}, grants...)
	}
	c := &Client{
		ID:           "mcp-" + randomToken()[:32],
		AuthMethod:   method,
		RedirectURIs: slices.Clone(req.RedirectURIs),
		GrantTypes:   grants,
		Name:         req.ClientName,
		URI:          req.ClientURI,
		Scope:        strings.Join(s.narrowScopes(req.Scope), " "),
		IssuedAt:     s.now().Unix(),
	}
	var secret string
	if method != authNone {
		secret = randomToken()
		c.SecretHash = hashOf(secret)
	}
	return c, secret, "", nil
}

// validateRedirectURIs checks the list a client registers: present, at
// most maxRedirectURIs, each valid and at most maxRedirectURILen long.
func validateRedirectURIs(list []string) error {
	switch {
	case len(list) == 0:
		return errors.New("redirect_uris is required")
	case len(list) > maxRedirectURIs:
		return fmt.Errorf("at most %d redirect_uris may be registered", maxRedirectURIs)
	}
	for _, u := range list {
		if len(u) > maxRedirectURILen {
			return fmt.Errorf("a redirect URI may be at most %d characters", maxRedirectURILen)
		}
		if err := validateRedirectURI(u); err != nil {
			return err
		}
	}
	return nil
}

// validateMetadataSizes bounds every other field a client's metadata
// stores or we iterate over.
func validateMetadataSizes(req registrationRequest) error {
	for _, f := range []struct {
		name string
		val  string
		max  int
	}{
		{"client_name", req.ClientName, maxClientNameLen},
		{"client_uri", req.ClientURI, maxClientURILen},
		{"scope", req.Scope, maxScopeLen},
	} {
		if len(f.val) > f.max {
			return fmt.Errorf("%s may be at most %d characters", f.name, f.max)
		}
	}
	if len(req.GrantTypes) > maxListLen || len(req.ResponseTypes) > maxListLen {
		return fmt.Errorf("grant_types and response_types may have at most %d entries", maxListLen)
	}
	return nil
}

// forbiddenSchemes can never be redirect targets: they execute or read local
// content in the user agent.
var forbiddenSchemes = []string{"javascript", "data", "vbscript", "file", "about", "blob", "filesystem"}

// validateRedirectURI applies OAuth 2.1 and RFC 8252: https anywhere, http
// only on loopback (any port), private-use schemes for native apps
// (cursor://, vscode://, com.example.app:/cb), never a fragment.
func validateRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("redirect URI %q is not an absolute URI", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect URI %q must not contain a fragment", raw)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
		if u.Host == "" {
			return fmt.Errorf("redirect URI %q has no host", raw)
		}
	case scheme == "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("redirect URI %q: http is only allowed for loopback hosts (RFC 8252)", raw)
		}
	case slices.Contains(forbiddenSchemes, scheme):
		return fmt.Errorf("redirect URI scheme %q is not allowed", u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("redirect URI %q must not contain user information", raw)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redirectMatches is exact string comparison, except that for http loopback
// redirect URIs the port may differ (RFC 8252 §7.3: native apps get an
// ephemeral port at request time).
func redirectMatches(registered, requested string) bool {
	if registered == requested {
		return true
	}
	ru, err1 := url.Parse(registered)
	qu, err2 := url.Parse(requested)
	if err1 != nil || err2 != nil || ru.Scheme != "http" || qu.Scheme != "http" || !isLoopbackHost(ru.Hostname()) {
		return false
	}
	return ru.Hostname() == qu.Hostname() && ru.EscapedPath() == qu.EscapedPath() &&
		ru.RawQuery == qu.RawQuery && ru.User == nil && qu.User == nil && qu.Fragment == ""
}

func (c *Client) redirectAllowed(uri string) bool {
	for _, reg := range c.RedirectURIs {
		if redirectMatches(reg, uri) {
			return true
		}
	}
	return false
}

// errUnknownClient means the client_id names no registration and no valid
// metadata document.
var errUnknownClient = errors.New("oauth: unknown client")

// lookupClient finds a registered client, or fetches the metadata document
// when the client_id is an https URL.
//
// A client ID metadata document not yet cached is fetched, and cached, only
// after mayFetch (when not nil) agrees: callers that have not already
// charged the request to its client address pass the address's budget.
func (s *Server) lookupClient(ctx context.Context, id string, mayFetch func() error) (*Client, error) {
	if id == "" {
		return nil, errUnknownClient
	}
	if strings.HasPrefix(id, "https://") && !s.opts.CIMD.Disabled {
		return s.cimd.client(ctx, id, mayFetch)
	}
	var c Client
	if err := s.getJSON(ctx, keyClient+id, &c); err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return nil, errUnknownClient
		}
		return nil, err
	}
	return &c, nil
}

// touchClient keeps an in-use registration alive for another ClientTTL. It
// is called when a token is issued, so only a registration a user has
// actually authorized is kept beyond UnusedClientTTL.
func (s *Server) touchClient(ctx context.Context, c *Client) {
	if c.FromDocument {
		return
	}
	if err := s.putJSON(ctx, keyClient+c.ID, c, s.opts.ClientTTL); err != nil {
		s.logFor(ctx).Warn("oauth: refresh client registration", zap.String("client_id", c.ID), zap.Error(err))
	}
}

// fetchLimitedError refuses to fetch a client metadata document for a
// client address that has used up its budget: the fetch stores the document,
// so an uncached client_id URL at the token or revocation endpoint is
// unauthenticated state creation like an authorization request.
type fetchLimitedError struct{ wait time.Duration }

func (e *fetchLimitedError) Error() string {
	return "oauth: too many client metadata documents fetched for this client address"
}

// fetchBudget charges a client metadata document fetch to r's client
// address, in the budget /oauth2/authorize uses.
func (s *Server) fetchBudget(r *http.Request) func() error {
	return func() error {
		if ok, wait := s.opts.RequestLimiter.Allow(s.opts.ClientAddr(r)); !ok {
			return &fetchLimitedError{wait: wait}
		}
		return nil
	}
}

// errClientAuth is a failed client authentication (invalid_client).
var errClientAuth = errors.New("oauth: client authentication failed")

// authenticateClient implements the token and revocation endpoints' client
// authentication: client_secret_basic, client_secret_post, or none for
// public clients (client_id in the form).
func (s *Server) authenticateClient(r *http.Request) (*Client, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err error
		if id, err = url.QueryUnescape(id); err != nil {
			return nil, errClientAuth
		}
		if secret, err = url.QueryUnescape(secret); err != nil {
			return nil, errClientAuth
		}
		// One authentication method per request (RFC 6749 2.3), and a form
		// client_id, if any, must name the client that authenticated.
		if r.PostForm.Get("client_secret") != "" {
			return nil, fmt.Errorf("%w: client_secret_basic and client_secret_post in one request", errClientAuth)
		}
		if fid := r.PostForm.Get("client_id"); fid != "" && fid != id {
			return nil, fmt.Errorf("%w: client_id in the form differs from the authenticated client", errClientAuth)
		}
	} else {
		id = r.PostForm.Get("client_id")
		secret = r.PostForm.Get("client_secret")
	}
	c, err := s.lookupClient(r.Context(), id, s.fetchBudget(r))
	if err != nil {
		if errors.Is(err, errUnknownClient) || errors.Is(err, errCIMD) {
			return nil, fmt.Errorf("%w: %w", errClientAuth, err)
		}
		return nil, err
	}
	if c.public() {
		if secret != "" {
			return nil, fmt.Errorf("%w: public client sent a secret", errClientAuth)
		}
		return c, nil
	}
	if secret == "" || !equalHash(secret, c.SecretHash) {
		return nil, fmt.Errorf("%w: bad secret", errClientAuth)
	}
	return c, nil
}
