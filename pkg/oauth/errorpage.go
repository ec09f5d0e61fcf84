package oauth

import (
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// errorPage answers an authorization error on a page of the proxy, never
// by redirecting: anyone can register a redirect URI, so until the user has
// logged in and approved the client, redirecting an error would make the
// proxy an open redirector (RFC 9700 §4.11.2). Browsers get HTML; API
// callers the RFC 6749 JSON error.
func errorPage(w http.ResponseWriter, r *http.Request, status int, code, description string) {
	if !wantsHTML(r) {
		writeOAuthError(w, status, code, description)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, errorPageHTML(errorView{Code: code, Description: description, RequestID: requestid.FromContext(r.Context())}))
}

// wantsHTML reports whether r is a browser page load: fetch metadata says
// so, or (older browsers) Accept names text/html. "*/*" alone, what API
// clients send, does not count.
func wantsHTML(r *http.Request) bool {
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return strings.EqualFold(strings.TrimSpace(mode), "navigate")
	}
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || !strings.EqualFold(mt, "text/html") {
				continue
			}
			// q=0 (in any spelling) refuses HTML.
			if q := strings.TrimSpace(params["q"]); q == "" || strings.Trim(q, "0.") != "" {
				return true
			}
		}
	}
	return false
}
