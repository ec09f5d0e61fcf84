package resource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// SessionHeader is the Streamable HTTP session header.
const SessionHeader = "Mcp-Session-Id"

// DefaultSessionBindingTTL is used when NewSessionBinder gets ttl <= 0. The
// TTL slides: a binding in use is renewed once half of it has passed, so it
// lapses only after the session has been idle for between TTL/2 and TTL.
// Once it has lapsed the session id is treated as unknown and the upstream
// decides.
const DefaultSessionBindingTTL = 24 * time.Hour

// bindingPrefix namespaces bindings in the shared store.
const bindingPrefix = "mcp-session:"

// BindingStore is what SessionBinder needs from the session store
// (implemented by session.Values, a subset of session.Store).
type BindingStore interface {
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Get(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
}

// SessionBinder binds MCP session ids to the user who created them, so a
// leaked or guessed Mcp-Session-Id is useless to anybody else. The binding
// lives in the shared store, so it holds across replicas.
type SessionBinder struct {
	store BindingStore
	ttl   time.Duration
	log   *zap.Logger
	now   func() time.Time
	seen  bindingCache
}

// maxCachedBindings bounds the bindings a replica remembers for store
// outages (about 100 bytes each).
const maxCachedBindings = 10000

// bindingCache remembers the bindings this replica has read or written, so
// that while the store is down an MCP session it has seen keeps working for
// its owner (DESIGN.md: bearer requests keep working when Redis is down)
// and is still refused to anybody else. A binding it has not seen is not
// guessed at: that request gets 503. The cache only answers during an
// outage; the store stays the authority.
type bindingCache struct {
	mu     sync.Mutex
	owners map[string]string // binding key -> owner
}

func (c *bindingCache) remember(key, owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owners == nil || len(c.owners) >= maxCachedBindings {
		// Starting over keeps the bound without bookkeeping; the cost is
		// only that older sessions are unknown during an outage.
		c.owners = map[string]string{}
	}
	c.owners[key] = owner
}

func (c *bindingCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.owners, key)
}

func (c *bindingCache) owner(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.owners[key]
	return o, ok
}

// NewSessionBinder returns a binder keeping bindings for ttl.
func NewSessionBinder(store BindingStore, ttl time.Duration) *SessionBinder {
	if ttl <= 0 {
		ttl = DefaultSessionBindingTTL
	}
	return &SessionBinder{store: store, ttl: ttl, log: zap.NewNop(), now: time.Now}
}

// WithClock sets the clock deciding when a binding is renewed and returns b.
func (b *SessionBinder) WithClock(now func() time.Time) *SessionBinder {
	b.now = now
	return b
}

// WithLogger sets the logger and returns b.
func (b *SessionBinder) WithLogger(l *zap.Logger) *SessionBinder {
	b.log = l
	return b
}

// logFor is the logger for lines about the request whose context is ctx
// (see requestid.Logger).
func (b *SessionBinder) logFor(ctx context.Context) *zap.Logger {
	return requestid.Logger(ctx, b.log)
}

// Wrap enforces bindings around next (the forwarding handler). It must run
// after authentication: the caller's identity comes from the context.
//   - a request whose Mcp-Session-Id is bound to another user gets 403 and
//     never reaches next; an unknown one is forwarded (the upstream answers
//     404 for sessions it does not know);
//   - while the store is down, a binding this replica has seen is enforced
//     from memory (owner forwarded, others 403); any other session id gets
//     503;
//   - a successful response that carries a new Mcp-Session-Id binds it to
//     the caller before the client sees it, or becomes a 503 if the binding
//     cannot be stored (an unbound session would be open to everyone);
//   - a successful DELETE removes the binding.
func (b *SessionBinder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := identity.FromContext(r.Context())
		if id == nil {
			apierror.Write(w, r, http.StatusUnauthorized, apierror.CodeUnauthenticated, "no authenticated identity")
			return
		}
		// The owner key (a hash) is only needed for a request naming a
		// session or a response starting one; most requests need neither.
		var owner string
		sid := r.Header.Get(SessionHeader)
		if sid != "" {
			owner = ownerKey(id)
			key := bindingKey(sid)
			bound, err := b.store.Get(r.Context(), key)
			boundOwner, renewAt := parseBinding(bound)
			if err == nil {
				b.seen.remember(key, boundOwner)
			}
			cached, known := b.seen.owner(key)
			switch {
			case errors.Is(err, session.ErrNotFound):
				b.seen.forget(key)
			case err != nil && known && cached == owner:
				b.logFor(r.Context()).Warn("read MCP session binding; the store is down, using the binding this replica saw", zap.Error(err))
			case err != nil && known:
				apierror.Write(w, r, http.StatusForbidden, apierror.CodeForbidden, "MCP session belongs to another user")
				return
			case err != nil:
				b.logFor(r.Context()).Error("read MCP session binding", zap.Error(err))
				apierror.WriteStoreDown(w, r, "the session store is temporarily unavailable; retry shortly")
				return
			case boundOwner != owner:
				apierror.Write(w, r, http.StatusForbidden, apierror.CodeForbidden, "MCP session belongs to another user")
				return
			case r.Method != http.MethodDelete && !b.now().Before(renewAt):
				// Without renewal a long-lived session would become unbound,
				// and so open to anyone holding its id, after the TTL.
				if err := b.put(r.Context(), sid, owner); err != nil {
					b.logFor(r.Context()).Warn("renew MCP session binding", zap.Error(err))
				}
			}
		}
		bw := &bindingWriter{ResponseWriter: w, b: b, r: r, id: id, owner: owner, requestSID: sid}
		next.ServeHTTP(bw, r)
		if !bw.wroteHeader {
			bw.WriteHeader(http.StatusOK)
		}
	})
}

// bindingKey is the store key for a session id; the id itself is a bearer
// credential for the upstream session, so only its hash is stored.
func bindingKey(sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return bindingPrefix + hex.EncodeToString(sum[:])
}

// put stores the binding of sid to owner for the TTL, with the time after
// which a request renews it.
func (b *SessionBinder) put(ctx context.Context, sid, owner string) error {
	renewAt := b.now().Add(b.ttl / 2).Unix()
	if err := b.store.Put(ctx, bindingKey(sid), []byte(owner+" "+strconv.FormatInt(renewAt, 10)), b.ttl); err != nil {
		return err
	}
	b.seen.remember(bindingKey(sid), owner)
	return nil
}

// parseBinding splits a stored binding into owner and renewal time. A value
// without a renewal time (written before renewal existed) is due at once.
func parseBinding(v []byte) (string, time.Time) {
	owner, at, ok := strings.Cut(string(v), " ")
	if !ok {
		return owner, time.Time{}
	}
	sec, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return owner, time.Time{}
	}
	return owner, time.Unix(sec, 0)
}

// ownerKey identifies the caller in a binding: a hash of the subject, so
// the store holds no user identifiers.
func ownerKey(id *identity.Identity) string {
	sum := sha256.Sum256([]byte(id.Subject))
	var buf [2 * sha256.Size]byte
	hex.Encode(buf[:], sum[:])
	return string(buf[:])
}

// bindingWriter acts on the upstream's status and headers before they are
// sent.
type bindingWriter struct {
	http.ResponseWriter
	b           *SessionBinder
	r           *http.Request
	id          *identity.Identity
	owner       string // ownerKey(id), computed on first use
	requestSID  string
	wroteHeader bool
	failed      bool
}

func (w *bindingWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 100 && code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteHeader = true
	if code >= 200 && code < 300 {
		ctx := context.WithoutCancel(w.r.Context())
		if sid := w.Header().Get(SessionHeader); sid != "" && sid != w.requestSID {
			if w.owner == "" {
				w.owner = ownerKey(w.id)
			}
			if err := w.b.put(ctx, sid, w.owner); err != nil {
				w.b.logFor(ctx).Error("store MCP session binding", zap.Error(err))
				w.failed = true
				h := w.Header()
				h.Del(SessionHeader)
				h.Del("Content-Length")
				apierror.WriteStoreDown(w.ResponseWriter, w.r, "the session store is temporarily unavailable; retry shortly")
				return
			}
		}
		if w.r.Method == http.MethodDelete && w.requestSID != "" {
			w.b.seen.forget(bindingKey(w.requestSID))
			if err := w.b.store.Delete(ctx, bindingKey(w.requestSID)); err != nil {
				// The binding expires by itself; it only keeps refusing others.
				w.b.logFor(ctx).Warn("delete MCP session binding", zap.Error(err))
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *bindingWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Flush keeps streaming (SSE) responses flowing.
func (w *bindingWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *bindingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var _ http.Flusher = (*bindingWriter)(nil)
