package oauth

import (
	"html/template"
	"mime"
	"net/http"
	"strings"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// errorTemplate is the page a browser sees when an authorization step fails
// and the error must not (or cannot) go back to the client. html/template
// escapes every value, which matters: the description may quote request
// parameters.
var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorization failed</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
code{background:#f3f3f3;padding:0 .2rem}</style>
</head><body>
<h1>Authorization failed</h1>
<p>{{.Description}}</p>
<p>Error: <code>{{.Code}}</code>{{if .RequestID}} &middot; request <code>{{.RequestID}}</code>{{end}}</p>
<p>You were not sent back to the application because this server cannot tell yet whether you trust it. Close this page and start again from your application.</p>
</body></html>
`))

type errorView struct{ Code, Description, RequestID string }

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
	_ = errorTemplate.Execute(w, errorView{Code: code, Description: description, RequestID: requestid.FromContext(r.Context())})
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
