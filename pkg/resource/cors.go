package resource

import (
	"net/http"
	"strings"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/weborigin"
)

// CORS header values shared by the well-known and MCP endpoints.
const (
	exposeHeaders = "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version"
	allowHeaders  = "Authorization, Content-Type, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID"
	maxAge        = "600"
)

// PublicCORS lets any origin read next's responses (public metadata
// documents) and answers preflights itself.
func PublicCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", exposeHeaders)
		if isPreflight(r) {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			h.Set("Access-Control-Allow-Headers", allowHeaders)
			h.Set("Access-Control-Max-Age", maxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method == http.MethodOptions {
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// OriginOptions configure the MCP endpoint's Origin check and CORS.
type OriginOptions struct {
	// AllowedOrigins are exact origins ("https://app.example.com") that
	// browser-based MCP clients may call from.
	AllowedOrigins []string
	// BaseURL returns the proxy's external base URL for r; its origin is
	// always allowed. May be nil.
	BaseURL func(r *http.Request) string
}

// OriginGuard protects the MCP endpoint from DNS rebinding and answers CORS
// for allowed browser origins. Requests without Origin (non-browser
// clients) pass unchanged.
type OriginGuard struct {
	allowed map[string]bool
	baseURL func(r *http.Request) string
}

// NewOriginGuard returns an OriginGuard for opts.
func NewOriginGuard(opts OriginOptions) *OriginGuard {
	g := &OriginGuard{allowed: map[string]bool{}, baseURL: opts.BaseURL}
	for _, o := range opts.AllowedOrigins {
		if n := weborigin.Normalize(o); n != "" {
			g.allowed[n] = true
		}
	}
	return g
}

// Wrap refuses requests from origins not allowed with 403 (the MCP spec's
// DNS rebinding protection), answers preflights from allowed origins
// without authentication, and adds CORS headers to the rest.
func (g *OriginGuard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !g.Allowed(r, origin) {
			apierror.Write(w, r, http.StatusForbidden, apierror.CodeForbidden, "origin not allowed")
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", exposeHeaders)
		if isPreflight(r) {
			h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", allowHeaders)
			h.Set("Access-Control-Max-Age", maxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Check refuses, with 403, browser requests from origins not allowed, and
// passes everything else unchanged without CORS headers: for the proxy's
// other routes (login, logout, session, public paths), where a foreign page
// has no business and the app answers CORS itself. Requests without Origin
// (navigations, non-browser clients) pass. "Origin: null" passes only with
// "Sec-Fetch-Site: same-origin": browsers send null for a form POST from
// one of the proxy's own pages served with Referrer-Policy: no-referrer
// (the consent page).
func (g *OriginGuard) Check(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "null" && strings.EqualFold(strings.TrimSpace(r.Header.Get("Sec-Fetch-Site")), "same-origin") {
			next.ServeHTTP(w, r)
			return
		}
		if origin != "" && !g.Allowed(r, origin) {
			apierror.Write(w, r, http.StatusForbidden, apierror.CodeForbidden, "origin not allowed")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Allowed reports whether origin may call the MCP endpoint for r.
func (g *OriginGuard) Allowed(r *http.Request, origin string) bool {
	n := weborigin.Normalize(origin)
	if n == "" {
		return false
	}
	if g.allowed[n] {
		return true
	}
	return g.baseURL != nil && weborigin.Normalize(g.baseURL(r)) == n
}

func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}
