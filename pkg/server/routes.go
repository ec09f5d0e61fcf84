package server

import (
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// Route kinds label metrics and logs.
const (
	routeMCP     = "mcp"
	routePublic  = "public"
	routeLogin   = "login"
	routeSession = "session"
	routeBypass  = "bypass"
	routeOAuth   = "oauth"
)

// routes builds the protected listener's handler. First of all, a request
// for a host the operator does not expect gets 421 (hostGuard); a browser
// request from a foreign Origin gets 403 everywhere except on the open OAuth
// discovery, registration and token endpoints, which browser-based MCP
// clients call cross-origin by design and which act on no cookie. Then:
//
//	/oauth2/*, /api/v1/session   the proxy's own login and session endpoints
//	/.well-known/oauth-*, ...    MCP authorization metadata and, in façade
//	                             mode, the authorization server (oauthPatterns)
//	public paths                 forwarded without authentication
//	everything else              bearer or cookie authentication, Origin
//	                             check, authorization, session binding,
//	                             on the MCP endpoint the tool policy and
//	                             audit (and token exchange), then forwarded
func (s *Server) routes() http.Handler {
	wrap := func(route string, h http.Handler) http.Handler {
		if s.tracer != nil {
			h = s.tracer.Middleware(route, h)
		}
		return s.observe(route, h)
	}

	// Authenticated requests to the MCP endpoint meet the tool policy and
	// the audit trail, then, with token exchange, get their downstream
	// token (only once the policy has let them through).
	forward := http.Handler(s.proxy)
	if s.exchange != nil {
		forward = s.exchange.Middleware(forward)
	}
	forward = s.guardMCP(forward)

	var protected http.Handler
	switch {
	case s.authn != nil:
		protected = s.mcp.wrap(forward, s.authn.Middleware, s.policy.Middleware)
		protected = wrap(routeMCP, protected)
	default:
		protected = wrap(routeBypass, s.origins.Check(s.bypass(forward)))
	}
	public := wrap(routePublic, s.origins.Check(s.proxy))

	// Endpoints the proxy parses itself read their body within a deadline.
	ownRoute := func(route string, h http.Handler) http.Handler { return wrap(route, s.boundBody(h)) }

	mux := http.NewServeMux()
	if s.authn != nil {
		own := s.origins.Check(s.authn.Handler())
		mux.Handle("/oauth2/", ownRoute(routeLogin, own))
		mux.Handle("/api/v1/session", ownRoute(routeSession, own))
		oauthMux := http.NewServeMux()
		s.mcp.register(oauthMux, s.authn.Middleware)
		for _, p := range oauthPatterns(s.mcp) {
			h := http.Handler(oauthMux)
			if !openToAnyOrigin(p) {
				h = s.origins.Check(h)
			}
			mux.Handle(p, ownRoute(routeOAuth, h))
		}
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.public.Load().Match(r.URL.Path) {
			public.ServeHTTP(w, r)
			return
		}
		protected.ServeHTTP(w, r)
	}))
	return requestid.Middleware(s.urls.Middleware(s.hosts.Wrap(mux)))
}

// openToAnyOrigin reports whether pattern is an OAuth endpoint that answers
// CORS for any origin: metadata, JWKS, registration, token and revocation,
// which browser-based MCP clients call from their own origin and which
// never act on a cookie. The authorization and consent pages do, and get
// the Origin check.
func openToAnyOrigin(pattern string) bool {
	if strings.Contains(pattern, "/.well-known/") {
		return true
	}
	switch pattern {
	case oauth.PathJWKS, oauth.PathRegister, oauth.PathToken, oauth.PathRevoke:
		return true
	}
	return false
}

// observe records metrics and writes one structured log line per request.
// It logs the path but never the query string (it carries codes and state
// during login) and no headers (they carry cookies and tokens).
func (s *Server) observe(route string, next http.Handler) http.Handler {
	m := s.metrics.Route(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.Started()
		sw := &statusRecorder{ResponseWriter: w}
		defer func() { m.Done(sw.code(), time.Since(start)) }()
		next.ServeHTTP(sw, r)
		// The access log is at debug level: build its fields only when it
		// is written, not on every proxied request.
		if ce := s.log.Check(zap.DebugLevel, "request"); ce != nil {
			ce.Write(
				zap.String("request_id", requestid.FromContext(r.Context())),
				zap.String("route", route),
				zap.String("method", r.Method),
				zap.String("path", r.URL.Path),
				zap.Int("status", sw.code()),
				zap.Duration("duration", time.Since(start)),
			)
		}
	})
}

// bypass admits everyone as a fixed development identity. It exists only for
// local development (validation requires an explicit acknowledgement) and
// says so on every request.
func (s *Server) bypass(next http.Handler) http.Handler {
	dev := &identity.Identity{Subject: "bypass-user", Email: "bypass-user@localhost", Name: "Bypass User", Username: "bypass-user", Method: "bypass"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("AUTH_MODE=bypass: request forwarded WITHOUT authentication (development only)",
			zap.String("request_id", requestid.FromContext(r.Context())), zap.String("path", r.URL.Path))
		s.metrics.AuthOutcome("bypass", "allowed")
		next.ServeHTTP(w, r.WithContext(identity.NewContext(r.Context(), dev)))
	})
}

// statusRecorder remembers the status code. Flush is forwarded explicitly
// because httputil.ReverseProxy and SSE handlers assert http.Flusher;
// Unwrap keeps Hijack reachable for WebSocket upgrades.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// oauthPatterns are the main-mux patterns served by the MCP authorization
// endpoints (metadata, and in façade mode the authorization server), so they
// get metrics and logs under their own route kind while every other path,
// including an app's own /.well-known files, still reaches the upstream.
func oauthPatterns(a *mcpAuth) []string {
	wellKnown := []string{"/.well-known/oauth-protected-resource"}
	if a.facade {
		wellKnown = append(wellKnown, "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")
	}
	var out []string
	for _, w := range wellKnown {
		out = append(out, w, w+"/")
		if w != wellKnown[0] {
			out = append(out, a.mcpPath+w)
		}
	}
	switch {
	case a.facade:
		out = append(out, oauth.PathAuthorize, oauth.PathConsent, oauth.PathToken, oauth.PathRegister, oauth.PathRevoke, oauth.PathJWKS)
	case a.oauth != nil:
		out = append(out, oauth.PathJWKS)
	}
	return out
}
