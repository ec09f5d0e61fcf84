// Package requestid gives every request an ID that appears in logs, error
// bodies and the forwarded request, so one user report can be traced across
// the proxy and the MCP server.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"go.uber.org/zap"
)

// Header is the header the ID is read from and written to (X-Request-ID;
// header names are case-insensitive). It is spelt in Go's canonical form,
// which is also how net/http writes it, so that Header.Get, Set and Del
// with it do not build the canonical key anew on every request.
const Header = "X-Request-Id"

// maxLen bounds a propagated ID so a client cannot inflate logs.
const maxLen = 128

type ctxKey struct{}

// FromContext returns the request ID, or "" outside a request.
func FromContext(ctx context.Context) string {
	if id, ok := ctx.Value(ctxKey{}).(*string); ok {
		return *id
	}
	return ""
}

// LogField is ctx's request ID as the log field every line about a request
// carries (request_id, as in the access log).
func LogField(ctx context.Context) zap.Field {
	return zap.String("request_id", FromContext(ctx))
}

// Logger is log for lines about the request whose context is ctx: each line
// carries the request ID, so it can be matched with the access log and
// with the error body the client reports. Contexts detached from the
// request (context.WithoutCancel) keep the ID.
func Logger(ctx context.Context, log *zap.Logger) *zap.Logger {
	return log.With(LogField(ctx))
}

// NewContext stores id in ctx.
func NewContext(ctx context.Context, id string) context.Context {
	return &idContext{Context: ctx, id: id}
}

// idContext carries a request ID. It is context.WithValue with the ID
// inside and handed out by pointer, so storing it costs every request one
// allocation rather than two (the context and the string boxed as a
// value), and reading it none.
type idContext struct {
	context.Context
	id string
}

// Value answers FromContext's key with the ID and every other key from
// the parent.
func (c *idContext) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return &c.id
	}
	return c.Context.Value(key)
}

// New returns a fresh random ID (128 bits, hex).
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	var h [2 * len(b)]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}

// valid accepts IDs made of a conservative character set so that a propagated
// ID cannot inject anything into logs or headers.
func valid(id string) bool {
	if id == "" || len(id) > maxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':':
		default:
			return false
		}
	}
	return true
}

// Middleware propagates a well-formed incoming X-Request-ID or generates one,
// stores it in the request context, sets it on the request (so the upstream
// sees it) and echoes it on the response.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(Header)
		if !valid(id) {
			id = New()
		}
		r.Header.Set(Header, id)
		w.Header().Set(Header, id)
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}
