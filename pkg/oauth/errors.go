package oauth

import (
	"net/http"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/httpjson"
)

// OAuth error codes (RFC 6749 §4.1.2.1 and §5.2, RFC 7591 §3.2.2, RFC 8707).
const (
	errInvalidRequest         = "invalid_request"
	errInvalidClient          = "invalid_client"
	errInvalidGrant           = "invalid_grant"
	errUnauthorizedClient     = "unauthorized_client"
	errUnsupportedGrantType   = "unsupported_grant_type"
	errUnsupportedRespType    = "unsupported_response_type"
	errInvalidScope           = "invalid_scope"
	errInvalidTarget          = "invalid_target"
	errAccessDenied           = "access_denied"
	errServerError            = "server_error"
	errTemporarilyUnavailable = "temporarily_unavailable"
	errInvalidRedirectURI     = "invalid_redirect_uri"
	errInvalidClientMetadata  = "invalid_client_metadata"
	errSlowDown               = "slow_down"
)

// oauthError is the RFC 6749 §5.2 error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	httpjson.Write(w, status, oauthError{Error: code, Description: description})
}
