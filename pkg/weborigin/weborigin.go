// Package weborigin compares browser origins (RFC 6454). The Origin checks
// of the MCP endpoint, the proxy's own pages and the logout confirmation all
// decide "is this request from us?" with the same normalisation, so one
// spelling of an origin can never pass one check and fail another.
package weborigin

import (
	"net/url"
	"strings"
)

// Normalize returns scheme://host[:port] of an absolute http(s) URL or
// origin in lower case without a default port, or "" for anything else
// (including the opaque origin "null", user info and other schemes).
func Normalize(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" || u.User != nil {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return ""
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host
}
