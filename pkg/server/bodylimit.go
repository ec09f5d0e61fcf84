package server

import (
	"fmt"
	"net/http"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
)

// maxOwnBody bounds a request body sent to an endpoint the proxy parses
// itself (login, session, OAuth). None of them needs more than a form or a
// client registration; the endpoints' own limits are this or lower.
const maxOwnBody = 64 << 10

// limitOwnBody answers 413 at once when a request to one of the proxy's own
// endpoints declares a body larger than maxOwnBody, instead of letting the
// handler read up to its limit and answer a generic 400. A body without a
// declared length (chunked) is cut off at maxOwnBody and the handler
// reports the error. Requests forwarded to the upstream never pass here:
// the MCP server decides what it accepts.
func limitOwnBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxOwnBody {
			// Do not read the body; the connection is closed after the
			// answer so the unread bytes cannot be taken for a request.
			w.Header().Set("Connection", "close")
			apierror.Write(w, r, http.StatusRequestEntityTooLarge, apierror.CodeBadRequest,
				fmt.Sprintf("request body too large: the limit is %d KiB", maxOwnBody>>10))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, maxOwnBody)
		}
		next.ServeHTTP(w, r)
	})
}
