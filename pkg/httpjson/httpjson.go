// Package httpjson writes the JSON documents the proxy itself serves
// (token and metadata responses, session info, health), so every one of
// them carries the same content type and caching and sniffing rules.
// Errors have their own shape and writer, package apierror.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write sends v as JSON with status. Responses are not cached (no-store,
// and Pragma: no-cache for HTTP/1.0 caches, as RFC 6749 §5.1 asks of token
// responses) unless the handler has set its own Cache-Control first, as
// public metadata documents do; browsers must not sniff them as anything
// else.
func Write(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
