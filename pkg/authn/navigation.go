package authn

import (
	"mime"
	"net/http"
	"strings"
)

// IsNavigation reports whether r is a browser loading a page, the only kind
// of request that may be answered with a redirect to the login page. Every
// other caller (MCP clients, fetch/XHR, form POSTs, EventSource) gets a JSON
// error it can act on instead of an HTML login page it cannot use.
//
// Fetch metadata decides when the browser sent it (Sec-Fetch-Mode:
// navigate); older browsers and curl fall back to "Accept lists text/html".
func IsNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return strings.EqualFold(strings.TrimSpace(mode), "navigate")
	}
	return acceptsHTML(r.Header.Values("Accept"))
}

// acceptsHTML reports whether any Accept media range names text/html (with a
// non-zero quality). Wildcards do not count: "*/*" is what API clients send.
func acceptsHTML(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || !strings.EqualFold(mt, "text/html") {
				continue
			}
			if q := strings.TrimSpace(params["q"]); q == "0" || q == "0.0" || q == "0.00" || q == "0.000" {
				continue
			}
			return true
		}
	}
	return false
}

// isLogoutNavigation also accepts a form POST navigation, which is how a
// "Log out" button in a web UI reaches the logout endpoint.
func isLogoutNavigation(r *http.Request) bool {
	if r.Method == http.MethodPost && strings.EqualFold(r.Header.Get("Sec-Fetch-Mode"), "navigate") {
		return true
	}
	return IsNavigation(r)
}
