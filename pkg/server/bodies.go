package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
)

// maxOwnBody caps the request body of the endpoints the proxy parses itself
// (token, registration, revocation, authorization, consent and logout
// requests are a few KiB at most). The handlers' own, tighter caps still
// apply; this one also covers the handlers that have none.
const maxOwnBody = 64 << 10

// boundBody reads the whole request body of the proxy's own endpoints
// before they run, within cfg.RequestBodyTimeout (a read deadline on the
// connection, so a client trickling one byte at a time is cut off too) and
// up to maxOwnBody. A client too slow gets 408, one sending too much 413,
// and on HTTP/1.x the connection is closed, since the rest of its body is
// still on the wire. Requests forwarded to the upstream never pass here:
// their bodies stream, as slowly as the client and the MCP server like.
func (s *Server) boundBody(next http.Handler) http.Handler {
	timeout := s.cfg.RequestBodyTimeout
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > maxOwnBody {
			refuseBody(w, r, http.StatusRequestEntityTooLarge, apierror.CodeRequestTooLarge, "request body too large")
			return
		}
		rc := http.NewResponseController(w)
		// Not supported only by writers that are not a connection (tests);
		// then the body is still capped.
		deadline := timeout > 0 && rc.SetReadDeadline(time.Now().Add(timeout)) == nil
		var buf bytes.Buffer
		if r.ContentLength > 0 {
			buf.Grow(int(r.ContentLength))
		}
		_, err := buf.ReadFrom(io.LimitReader(r.Body, maxOwnBody+1))
		switch {
		case isTimeout(err):
			// The expired deadline stays: nothing more is read from this
			// connection.
			refuseBody(w, r, http.StatusRequestTimeout, apierror.CodeRequestTimeout, "request body not received in time")
			return
		case err != nil:
			refuseBody(w, r, http.StatusBadRequest, apierror.CodeBadRequest, "could not read the request body")
			return
		case buf.Len() > maxOwnBody:
			refuseBody(w, r, http.StatusRequestEntityTooLarge, apierror.CodeRequestTooLarge, "request body too large")
			return
		}
		if deadline {
			// The handler may take its time (a call to the identity
			// provider); an expired deadline would make the server's
			// background read cancel the request's context.
			_ = rc.SetReadDeadline(time.Time{})
		}
		_ = r.Body.Close()
		r.Body = io.NopCloser(&buf)
		next.ServeHTTP(w, r)
	})
}

// refuseBody answers a request whose body the proxy will not read (further).
func refuseBody(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	if r.ProtoMajor == 1 {
		// The unread rest of the body would otherwise be drained (and
		// waited for) to reuse the connection.
		w.Header().Set("Connection", "close")
	}
	apierror.Write(w, r, status, code, message)
}

// isTimeout reports a read that ran into the read deadline.
func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
