package oidcprovider

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// groupsClaim is the claim name the provider uses for group memberships; it
// is the de-facto name used by Keycloak, Okta and Dex, and the relying
// party's default.
const groupsClaim = "groups"

// userStore adapts the configured users to the example storage's UserStore,
// so that the example storage's login check and claim mapping work on them
// instead of its hostname-dependent built-in users.
type userStore struct {
	byID   map[string]*storage.User
	groups map[string][]string
	// claims are each user's further claims (User.Claims).
	claims map[string]map[string]any
	// disabled users cannot log in and their refresh tokens are refused
	// (see Provider.DisableUser).
	disabled map[string]bool
}

var _ storage.UserStore = (*userStore)(nil)

func newUserStore(users []User) *userStore {
	s := &userStore{byID: map[string]*storage.User{}, groups: map[string][]string{}, claims: map[string]map[string]any{}, disabled: map[string]bool{}}
	for _, u := range users {
		s.byID[u.ID] = &storage.User{
			ID:                u.ID,
			Username:          u.Username,
			Password:          u.Password,
			FirstName:         u.GivenName,
			LastName:          u.FamilyName,
			Email:             u.Email,
			EmailVerified:     u.EmailVerified,
			PreferredLanguage: language.English,
		}
		s.groups[u.ID] = slices.Clone(u.Groups)
		s.claims[u.ID] = maps.Clone(u.Claims)
	}
	return s
}

func (s *userStore) GetUserByID(id string) *storage.User { return s.byID[id] }

func (s *userStore) GetUserByUsername(username string) *storage.User {
	for _, u := range s.byID {
		if u.Username == username && !s.disabled[u.ID] {
			return u
		}
	}
	return nil
}

// ExampleClientID is required by storage.UserStore for the example's JWT
// profile service user, which this provider does not use.
func (s *userStore) ExampleClientID() string { return storage.ServiceUserID }

// opStorage is the example storage with the knobs tests need: configurable
// access token lifetimes, a groups claim and per-client settings. Everything
// else (auth requests, codes, PKCE, rotating refresh tokens, keys) is the
// example storage unchanged.
type opStorage struct {
	*storage.Storage
	users               *userStore
	clients             map[string]*client
	accessTokenLifetime time.Duration
	// accessTokenAudience is added to the aud of tokens (see
	// Options.AccessTokenAudience).
	accessTokenAudience []string
	// exchangeAudiences limit token exchange (see
	// Options.TokenExchangeAudiences); nil allows any.
	exchangeAudiences []string
	now               func() time.Time
}

var (
	_ op.Storage                   = (*opStorage)(nil)
	_ op.CanSetUserinfoFromRequest = (*opStorage)(nil)
	_ op.TokenExchangeStorage      = (*opStorage)(nil)
)

// tokenExchangeGrant is the RFC 8693 grant type.
const tokenExchangeGrant = string(oidc.GrantTypeTokenExchange)

// exchangeKey marks the context of a token exchange request (set by
// Provider.observe).
type exchangeKey struct{}

// GetClientByClientID returns the configured client wrapper rather than the
// example's client, so lifetimes, logout URIs and globs are ours. During a
// token exchange the client issues JWT access tokens, whatever it issues
// otherwise: downstream APIs validate exchanged tokens locally.
func (s *opStorage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	c, ok := s.clients[clientID]
	if !ok {
		return nil, oidc.ErrInvalidClient().WithDescription("client not found")
	}
	if exchange, _ := ctx.Value(exchangeKey{}).(bool); exchange {
		jwt := *c
		jwt.jwtAccessTokens = true
		return &jwt, nil
	}
	return c, nil
}

// ValidateTokenExchangeRequest replaces the example's check (which allows
// only impersonation by admins) with what an IdP configured for delegation
// to APIs does: the subject's user must still be active, the audience must
// be one the provider knows (Options.TokenExchangeAudiences), and the
// issued token is an access token unless another type is asked for.
func (s *opStorage) ValidateTokenExchangeRequest(ctx context.Context, request op.TokenExchangeRequest) error {
	if request.GetRequestedTokenType() == "" {
		request.SetRequestedTokenType(oidc.AccessTokenType)
	}
	if request.GetRequestedTokenType() != oidc.AccessTokenType {
		return oidc.ErrInvalidRequest().WithDescription("only access tokens are issued by token exchange")
	}
	subject := request.GetExchangeSubject()
	if s.users.GetUserByID(subject) == nil || s.users.disabled[subject] {
		return oidc.ErrInvalidGrant().WithDescription("the subject token's user is unknown or disabled")
	}
	if s.exchangeAudiences != nil {
		for _, aud := range request.GetAudience() {
			if !slices.Contains(s.exchangeAudiences, aud) {
				return oidc.ErrInvalidTarget().WithDescription("audience %q is not allowed for token exchange", aud)
			}
		}
	}
	request.SetCurrentScopes(request.GetScopes())
	return nil
}

// GetPrivateClaimsFromTokenExchangeRequest puts the granted scopes and the
// user's claims into an exchanged JWT access token.
func (s *opStorage) GetPrivateClaimsFromTokenExchangeRequest(ctx context.Context, request op.TokenExchangeRequest) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromTokenExchangeRequest(ctx, request)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		claims = map[string]any{}
	}
	if scopes := request.GetScopes(); len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	if u := s.users.GetUserByID(request.GetSubject()); u != nil {
		claims["email"] = u.Email
	}
	return claims, nil
}

// CreateAccessToken shortens (or lengthens) the reported access token
// lifetime to the configured one, so relying parties see a short expires_in.
func (s *opStorage) CreateAccessToken(ctx context.Context, request op.TokenRequest) (string, time.Time, error) {
	id, _, err := s.Storage.CreateAccessToken(ctx, unwrapAudience(request))
	return id, s.now().Add(s.accessTokenLifetime), err
}

// CreateAccessAndRefreshTokens is the example's rotating implementation with
// the configured access token lifetime.
func (s *opStorage) CreateAccessAndRefreshTokens(ctx context.Context, request op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	id, refresh, _, err := s.Storage.CreateAccessAndRefreshTokens(ctx, unwrapAudience(request), currentRefreshToken)
	return id, refresh, s.now().Add(s.accessTokenLifetime), err
}

// AuthRequestByCode widens the request's audience by
// Options.AccessTokenAudience, which op.CreateJWT copies into the access
// token's aud.
func (s *opStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	req, err := s.Storage.AuthRequestByCode(ctx, code)
	if err != nil || len(s.accessTokenAudience) == 0 {
		return req, err
	}
	return &audienceAuthRequest{AuthRequest: req, extra: s.accessTokenAudience}, nil
}

// TokenRequestByRefreshToken does the same for refreshed access tokens,
// and refuses the refresh tokens of disabled users (the OP answers
// invalid_grant), as an IdP does for a deactivated account.
func (s *opStorage) TokenRequestByRefreshToken(ctx context.Context, refreshToken string) (op.RefreshTokenRequest, error) {
	req, err := s.Storage.TokenRequestByRefreshToken(ctx, refreshToken)
	if err == nil && s.users.disabled[req.GetSubject()] {
		return nil, errors.New("user is disabled")
	}
	if err != nil || len(s.accessTokenAudience) == 0 {
		return req, err
	}
	return &audienceRefreshRequest{RefreshTokenRequest: req, extra: s.accessTokenAudience}, nil
}

// GetPrivateClaimsFromScopes adds scope and user claims to JWT access
// tokens, as IdPs do for APIs, so a resource server can authorize from the
// token alone.
func (s *opStorage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil || len(s.accessTokenAudience) == 0 {
		return claims, err
	}
	if claims == nil {
		claims = map[string]any{}
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	if u := s.users.GetUserByID(userID); u != nil {
		claims["email"] = u.Email
		claims["email_verified"] = u.EmailVerified
		claims["name"] = strings.TrimSpace(u.FirstName + " " + u.LastName)
		claims["preferred_username"] = u.Username
	}
	if groups := s.users.groups[userID]; len(groups) > 0 {
		claims[groupsClaim] = slices.Clone(groups)
	}
	maps.Copy(claims, s.users.claims[userID])
	return claims, nil
}

// audienceAuthRequest and audienceRefreshRequest add audiences to a token
// request; unwrapAudience hands the example storage its own type back,
// because it switches on it.
type audienceAuthRequest struct {
	op.AuthRequest
	extra []string
}

func (r *audienceAuthRequest) GetAudience() []string {
	return append(slices.Clone(r.AuthRequest.GetAudience()), r.extra...)
}

type audienceRefreshRequest struct {
	op.RefreshTokenRequest
	extra []string
}

func (r *audienceRefreshRequest) GetAudience() []string {
	return append(slices.Clone(r.RefreshTokenRequest.GetAudience()), r.extra...)
}

func unwrapAudience(req op.TokenRequest) op.TokenRequest {
	switch r := req.(type) {
	case *audienceAuthRequest:
		return r.AuthRequest
	case *audienceRefreshRequest:
		return r.RefreshTokenRequest
	}
	return req
}

// SetUserinfoFromRequest adds the groups claim and the user's further
// claims to ID tokens that carry profile claims.
func (s *opStorage) SetUserinfoFromRequest(ctx context.Context, userinfo *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, userinfo, token, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, oidc.ScopeProfile) || slices.Contains(scopes, groupsClaim) {
		s.addGroups(userinfo, token.GetSubject())
	}
	return nil
}

// SetUserinfoFromToken adds the groups claim and the user's further claims
// to the userinfo response.
func (s *opStorage) SetUserinfoFromToken(ctx context.Context, userinfo *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, userinfo, tokenID, subject, origin); err != nil {
		return err
	}
	s.addGroups(userinfo, userinfo.Subject)
	return nil
}

func (s *opStorage) addGroups(userinfo *oidc.UserInfo, subject string) {
	if groups := s.users.groups[subject]; len(groups) > 0 {
		userinfo.AppendClaims(groupsClaim, slices.Clone(groups))
	}
	for k, v := range s.users.claims[subject] {
		userinfo.AppendClaims(k, v)
	}
}

// client wraps the example web client with the settings the example hard
// codes: ID token lifetime, post-logout redirect URIs, public clients and
// redirect URI globs.
type client struct {
	*storage.Client
	public                 bool
	redirectURIs           []string
	postLogoutRedirectURIs []string
	idTokenLifetime        time.Duration
	claimsInIDToken        bool
	jwtAccessTokens        bool
}

var (
	_ op.Client           = (*client)(nil)
	_ op.HasRedirectGlobs = (*client)(nil)
)

func (c *client) RedirectURIs() []string { return c.redirectURIs }

func (c *client) PostLogoutRedirectURIs() []string { return c.postLogoutRedirectURIs }

// RedirectURIGlobs lets tests register "http://127.0.0.1:*/oauth2/callback"
// before they know the relying party's port (doublestar syntax).
func (c *client) RedirectURIGlobs() []string { return c.redirectURIs }

// PostLogoutRedirectURIGlobs is the same for logout (path.Match syntax).
func (c *client) PostLogoutRedirectURIGlobs() []string { return c.postLogoutRedirectURIs }

// AuthMethod makes clients without a secret public clients, which the OP
// then only accepts with PKCE.
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.public {
		return oidc.AuthMethodNone
	}
	return c.Client.AuthMethod()
}

// AccessTokenType is JWT when Options.AccessTokenAudience is set.
func (c *client) AccessTokenType() op.AccessTokenType {
	if c.jwtAccessTokens {
		return op.AccessTokenTypeJWT
	}
	return op.AccessTokenTypeBearer
}

func (c *client) IDTokenLifetime() time.Duration { return c.idTokenLifetime }

// IDTokenUserinfoClaimsAssertion puts profile, email and groups into the ID
// token, as most enterprise providers do, unless Options.MinimalIDToken.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return c.claimsInIDToken }

// IsScopeAllowed additionally permits a "groups" scope, which some relying
// parties request.
func (c *client) IsScopeAllowed(scope string) bool {
	return scope == groupsClaim || c.Client.IsScopeAllowed(scope)
}

// DevMode allows http redirect URIs, which every local test uses.
func (c *client) DevMode() bool { return true }
