// Package apierror writes the one JSON error shape every proxy-generated
// error uses, so clients and operators never see a bare Go error string.
package apierror

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// Body is the JSON error document:
// {"error":{"code":"...","message":"..."},"request_id":"..."}.
type Body struct {
	Error     Detail `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

// Detail is the machine-readable code and the human-readable message.
type Detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Codes used across the proxy. They are part of the public contract: clients
// may switch on them.
const (
	CodeUnauthenticated     = "unauthenticated"
	CodeForbidden           = "forbidden"
	CodeBadRequest          = "bad_request"
	CodeRequestTimeout      = "request_timeout"
	CodeRequestTooLarge     = "request_too_large"
	CodeUpstreamUnavailable = "upstream_unavailable"
	CodeUpstreamTimeout     = "upstream_timeout"
	CodeBadGateway          = "bad_gateway"
	CodeCircuitOpen         = "circuit_open"
	CodeSessionStoreDown    = "session_store_unavailable"
	CodeLoginFailed         = "login_failed"
	CodeInternal            = "internal_error"
	CodeRateLimited         = "rate_limited"
	// CodeTokenExchangeFailed: the proxy could not obtain the downstream
	// token (RFC 8693 token exchange) the MCP server needs for this caller.
	CodeTokenExchangeFailed = "token_exchange_failed"
)

// StoreDownRetryAfter is the Retry-After, in seconds, of every 503 the
// proxy answers because the session store is unreachable (the OAuth
// endpoints' temporarily_unavailable included). Nothing is lost while the
// store is down and its client reconnects, or follows a Sentinel failover,
// by itself, so a prompt retry is the right advice.
const StoreDownRetryAfter = 2

// WriteStoreDown answers 503 session_store_unavailable with Retry-After
// StoreDownRetryAfter. message tells the caller what state they are in
// (for a cookie session: that it is intact).
func WriteStoreDown(w http.ResponseWriter, r *http.Request, message string) {
	w.Header().Set("Retry-After", strconv.Itoa(StoreDownRetryAfter))
	Write(w, r, http.StatusServiceUnavailable, CodeSessionStoreDown, message)
}

// Write sends status with the JSON body. The request ID is taken from the
// request context (see package requestid).
func Write(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	body := Body{Error: Detail{Code: code, Message: message}}
	if r != nil {
		body.RequestID = requestid.FromContext(r.Context())
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
