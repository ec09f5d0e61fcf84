package mcpsession

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// HopHeader marks a request one replica forwarded to the session's owner.
// The owner never forwards such a request again (at most one hop) and
// strips the header before the MCP server. A client that sends it only
// stops its own request from hopping.
const HopHeader = "Mcp-Oidc-Proxy-Hop"

// SessionHeader is the Streamable HTTP session header.
const SessionHeader = "Mcp-Session-Id"

// Hop results the Observer gets (the metric's result label).
const (
	// ResultForwarded: the request went to the owner and its response came
	// back.
	ResultForwarded = "forwarded"
	// ResultOwnerGone: the owner could not be reached; the client got 404.
	ResultOwnerGone = "owner_gone"
	// ResultRefused: an id that does not open, has expired, belongs to
	// another user or arrived on a second hop; the client got 404.
	ResultRefused = "refused"
	// ResultReplayed: the owner was gone and this replica started the
	// session again from its stored initialize request.
	ResultReplayed = "replayed"
)

// Defaults for Options.
const (
	DefaultTTL        = 24 * time.Hour
	DefaultHopTimeout = 5 * time.Second
)

const (
	// deadFor is how long an owner that could not be reached is skipped
	// without dialling, so a gone pod costs one timeout, not one per
	// request.
	deadFor = 30 * time.Second
	// maxDeadOwners bounds the owners remembered as gone.
	maxDeadOwners = 1024
	// maxInitializeBody bounds the initialize request kept for replay (an
	// initialize is well under 1 KiB; a larger body is passed on but not
	// kept).
	maxInitializeBody = 64 << 10
	// replayPrefix and rebindPrefix namespace the replay values in the
	// store; the key is a hash of the client's session id, never the id.
	replayPrefix = "mcp-replay:"
	rebindPrefix = "mcp-rebind:"
)

// Observer counts hops (mcp_oidc_proxy_mcp_session_hops_total{result}).
type Observer interface {
	Hop(result string)
}

type nopObserver struct{}

func (nopObserver) Hop(string) {}

// Store keeps the initialize requests and rebindings of replay
// (session.Values fits; a miss is session.ErrNotFound).
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
}

// Options configures New.
type Options struct {
	// Sealer seals and opens the ids clients see. Required.
	Sealer *Sealer
	// Self is this replica's advertise address (host:port of its protected
	// port), the owner sealed into the ids it hands out. "" means never
	// hop: ids owned elsewhere are treated as owned by a gone replica.
	Self string
	// Issuer is the OIDC issuer; with the subject it names the user an id
	// belongs to.
	Issuer string
	// TTL is how long a session id stays valid (default DefaultTTL).
	TTL time.Duration
	// HopTimeout bounds connecting to the owner (TCP and TLS handshake);
	// default DefaultHopTimeout. Waiting for the owner's response is not
	// bounded by it: a tool call may take minutes before its first byte,
	// and taking it for a gone owner would run it twice. An owner that
	// vanishes without closing its connections is noticed by TCP
	// keep-alive probes, HopTimeout apart (about 4×HopTimeout).
	HopTimeout time.Duration
	// TLS, when set, makes hops use https with this configuration (its
	// ServerName must match the certificate every replica serves); nil
	// means http.
	TLS *tls.Config
	// Transport carries hops; default one built from HopTimeout and TLS
	// that never uses an environment proxy.
	Transport http.RoundTripper
	// Replay, when set, turns on initialize replay: the initialize request
	// of each session is kept here for TTL, so a replica can start the
	// session again when its owner is gone. nil: off.
	Replay Store
	// Observer counts hops; default none.
	Observer Observer
	// Logger gets debug lines for hops and refusals; default none.
	Logger *zap.Logger
	// Now is the clock (expiry, gone owners); default time.Now.
	Now func() time.Time
}

// Router seals the MCP server's session ids into the ids clients see and
// sends every request of a session to the replica that owns it (see the
// package comment).
type Router struct {
	sealer   *Sealer
	self     string
	issuer   string
	ttl      time.Duration
	replay   Store
	observer Observer
	log      *zap.Logger
	now      func() time.Time
	proxy    *httputil.ReverseProxy
	scheme   string
	dead     deadOwners
	flights  flights
	// replayTimeout bounds the synthetic initialize of a replay.
	replayTimeout time.Duration
}

// New returns a Router.
func New(opts Options) (*Router, error) {
	if opts.Sealer == nil {
		return nil, errors.New("mcpsession: a Sealer is required")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.HopTimeout <= 0 {
		opts.HopTimeout = DefaultHopTimeout
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Self != "" {
		if _, _, err := net.SplitHostPort(opts.Self); err != nil {
			return nil, fmt.Errorf("mcpsession: advertise address %q is not host:port: %w", opts.Self, err)
		}
	}
	rt := &Router{
		sealer:        opts.Sealer,
		self:          opts.Self,
		issuer:        opts.Issuer,
		ttl:           opts.TTL,
		replay:        opts.Replay,
		observer:      opts.Observer,
		log:           opts.Logger,
		now:           opts.Now,
		scheme:        "http",
		replayTimeout: max(opts.HopTimeout, 10*time.Second),
	}
	if opts.TLS != nil {
		rt.scheme = "https"
	}
	transport := opts.Transport
	if transport == nil {
		transport = newTransport(opts.HopTimeout, opts.TLS)
	}
	rt.proxy = rt.newProxy(transport)
	return rt, nil
}

// newTransport is the hops' transport: connecting (TCP, TLS) bounded by
// timeout, no proxy from the environment (hops go pod to pod). TCP
// keep-alive probes every timeout: an owner that vanishes without closing
// its connections (its node is gone) fails a hop waiting for its answer
// after about four timeouts, while a live owner's kernel answers the
// probes however long its tool runs.
func newTransport(timeout time.Duration, cfg *tls.Config) *http.Transport {
	d := &net.Dialer{
		Timeout:         timeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: timeout, Interval: timeout, Count: 3},
	}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   timeout,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if cfg != nil {
		t.TLSClientConfig = cfg.Clone()
	}
	return t
}

type credKey struct{}

// credentials are the caller's own, as the request arrived.
type credentials struct {
	authorization, cookie []string
}

// KeepCredentials remembers the Authorization and Cookie headers of a
// request that names a session, so a hop can send the caller's own
// credentials to the owner (the bearer middleware removes Authorization
// before Wrap runs). It goes before authentication; without it a hop
// arrives unauthenticated.
func (rt *Router) KeepCredentials(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.self == "" || r.Header.Get(SessionHeader) == "" {
			next.ServeHTTP(w, r)
			return
		}
		c := &credentials{
			authorization: slices.Clone(r.Header.Values("Authorization")),
			cookie:        slices.Clone(r.Header.Values("Cookie")),
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), credKey{}, c)))
	})
}

// Wrap routes requests to next (the chain towards the MCP server). It runs
// after authentication: the caller is identity.FromContext.
//   - a request without a session is served here; a session the MCP server
//     starts is handed to the client sealed;
//   - a session id that does not open, has expired or is another user's is
//     refused with 404 and never reaches next;
//   - a session this replica owns is served here with the MCP server's id;
//   - a session another replica owns is forwarded there once; when that
//     replica is gone the client gets 404, or, with replay, the session is
//     started again here.
func (rt *Router) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hopped := r.Header.Get(HopHeader) != ""
		if hopped {
			r.Header.Del(HopHeader)
		}
		sid := r.Header.Get(SessionHeader)
		if hopped {
			rt.logFor(r.Context()).Debug("mcp session hop received", zap.String("session", shortHash(sid)), zap.String("method", r.Method))
		}
		id := identity.FromContext(r.Context())
		if id == nil {
			apierror.Write(w, r, http.StatusUnauthorized, apierror.CodeUnauthenticated, "no authenticated identity")
			return
		}
		if sid == "" {
			rt.serveNew(w, r, next, id)
			return
		}
		c, err := rt.sealer.Open(sid, rt.now())
		switch {
		case err != nil:
			rt.refuse(w, r, sid, err.Error())
			return
		case c.Issuer != rt.issuer || c.Subject != id.Subject:
			rt.refuse(w, r, sid, "session of another user")
			return
		case hopped && c.Owner != rt.self:
			rt.refuse(w, r, sid, "second hop")
			return
		}
		rt.route(w, r, next, sid, c)
	})
}

// route serves a request naming the session sid (already opened as c).
func (rt *Router) route(w http.ResponseWriter, r *http.Request, next http.Handler, sid string, c Claims) {
	if c.Owner == rt.self {
		rt.serveLocal(w, r, next, sid, c)
		return
	}
	if rt.canHop(c.Owner) {
		if rt.hop(w, r, c.Owner, sid, sid) != hopUnreachable {
			return
		}
	}
	rt.ownerGone(w, r, next, sid, c)
}

// canHop reports whether a hop to owner is worth trying.
func (rt *Router) canHop(owner string) bool {
	return rt.self != "" && owner != "" && owner != rt.self && !rt.dead.isDead(owner, rt.now())
}

// ownerGone answers a request whose owner cannot be reached: 404, or with
// replay on, the session's rebinding or a new replay.
func (rt *Router) ownerGone(w http.ResponseWriter, r *http.Request, next http.Handler, sid string, c Claims) {
	log := rt.logFor(r.Context()).With(zap.String("session", shortHash(sid)), zap.String("owner", c.Owner))
	if rt.replay == nil {
		rt.observer.Hop(ResultOwnerGone)
		log.Debug("mcp session owner gone")
		writeNotFound(w)
		return
	}
	if c2, s2, ok := rt.rebinding(r.Context(), sid, c); ok {
		if c2.Owner == rt.self {
			rt.serveLocal(w, r, next, sid, c2)
			return
		}
		if rt.canHop(c2.Owner) && rt.hop(w, r, c2.Owner, sid, s2) != hopUnreachable {
			return
		}
	}
	c2, err := rt.flights.do(r.Context(), hashKey("", sid), func() (Claims, error) {
		return rt.replaySession(r, next, sid, c)
	})
	if err != nil {
		rt.observer.Hop(ResultOwnerGone)
		log.Debug("mcp session owner gone; no replay", zap.Error(err))
		writeNotFound(w)
		return
	}
	rt.serveLocal(w, r, next, sid, c2)
}

// rebinding returns the session a replay started for sid, if there is one
// and it is still the same user's.
func (rt *Router) rebinding(ctx context.Context, sid string, c Claims) (Claims, string, bool) {
	v, err := rt.replay.Get(ctx, hashKey(rebindPrefix, sid))
	if err != nil {
		return Claims{}, "", false
	}
	s2 := string(v)
	c2, err := rt.sealer.Open(s2, rt.now())
	if err != nil || c2.Issuer != c.Issuer || c2.Subject != c.Subject {
		return Claims{}, "", false
	}
	return c2, s2, true
}

// serveLocal serves a request of session sid (the client's id) on this
// replica's MCP server, whose id for it is c.Upstream.
func (rt *Router) serveLocal(w http.ResponseWriter, r *http.Request, next http.Handler, sid string, c Claims) {
	r.Header.Set(SessionHeader, c.Upstream)
	sw := &sealWriter{ResponseWriter: w, rt: rt, r: r, subject: c.Subject, clientID: sid, upstream: c.Upstream}
	next.ServeHTTP(sw, r)
	sw.finish()
}

// serveNew serves a request without a session; with replay on, an
// initialize request is kept once its response has started a session.
func (rt *Router) serveNew(w http.ResponseWriter, r *http.Request, next http.Handler, id *identity.Identity) {
	sw := &sealWriter{ResponseWriter: w, rt: rt, r: r, subject: id.Subject}
	if rt.replay != nil && r.Method == http.MethodPost && r.Body != nil && r.Body != http.NoBody {
		head, err := io.ReadAll(io.LimitReader(r.Body, maxInitializeBody+1))
		// Whatever was read goes on first, then the rest, unread.
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
		if err == nil && len(head) <= maxInitializeBody && isInitialize(head) {
			sw.initialize = head
		}
	}
	next.ServeHTTP(sw, r)
	sw.finish()
}

// isInitialize reports whether body is a single initialize request.
func isInitialize(body []byte) bool {
	if !bytes.Contains(body, []byte(`"initialize"`)) {
		return false
	}
	var msg struct {
		Method string `json:"method"`
	}
	return json.Unmarshal(body, &msg) == nil && msg.Method == "initialize"
}

// refuse answers an unknown session.
func (rt *Router) refuse(w http.ResponseWriter, r *http.Request, sid, reason string) {
	rt.observer.Hop(ResultRefused)
	rt.logFor(r.Context()).Debug("mcp session refused", zap.String("session", shortHash(sid)), zap.String("reason", reason))
	writeNotFound(w)
}

// notFoundBody is what the MCP SDK servers answer for an unknown session.
var notFoundBody = []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}`)

// writeNotFound answers 404 for an unknown session, as the MCP transport
// specifies, so the client starts a new session.
func writeNotFound(w http.ResponseWriter) {
	h := w.Header()
	h.Del(SessionHeader)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write(notFoundBody)
}

// forget removes the replay values of sid (its session was deleted).
func (rt *Router) forget(ctx context.Context, sid string) {
	if rt.replay == nil || sid == "" {
		return
	}
	for _, prefix := range []string{replayPrefix, rebindPrefix} {
		if err := rt.replay.Delete(ctx, hashKey(prefix, sid)); err != nil {
			// They expire by themselves; until then a replay could start
			// the deleted session again.
			rt.logFor(ctx).Warn("delete MCP session replay value", zap.Error(err))
		}
	}
}

func (rt *Router) logFor(ctx context.Context) *zap.Logger { return requestid.Logger(ctx, rt.log) }

// hashKey is prefix and the hex SHA-256 of sid: the store never holds a
// session id, which is a credential for the session.
func hashKey(prefix, sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return prefix + hex.EncodeToString(sum[:])
}

// shortHash names a session id in logs without logging it.
func shortHash(sid string) string {
	if sid == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(sid))
	return hex.EncodeToString(sum[:6])
}

// sealWriter replaces the MCP server's session id in the response headers
// before they are sent: the client only ever sees sealed ids.
type sealWriter struct {
	http.ResponseWriter
	rt      *Router
	r       *http.Request
	subject string
	// clientID and upstream are the request's session ids (client's and
	// MCP server's); "" for a request without a session.
	clientID, upstream string
	// initialize is the request body to keep for replay, when it is one.
	initialize  []byte
	wroteHeader bool
	failed      bool
}

func (w *sealWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 100 && code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteHeader = true
	h := w.Header()
	ctx := w.r.Context()
	if up := h.Get(SessionHeader); up != "" {
		if up == w.upstream && w.clientID != "" {
			h.Set(SessionHeader, w.clientID)
		} else if sealed, err := w.seal(up); err != nil {
			w.rt.logFor(ctx).Error("seal MCP session id", zap.Error(err))
			w.failed = true
			h.Del(SessionHeader)
			h.Del("Content-Length")
			apierror.Write(w.ResponseWriter, w.r, http.StatusInternalServerError, apierror.CodeInternal, "the MCP session could not be started")
			return
		} else {
			h.Set(SessionHeader, sealed)
			if w.initialize != nil && code >= 200 && code < 300 {
				w.keep(sealed)
			}
		}
	}
	if w.r.Method == http.MethodDelete && code >= 200 && code < 300 {
		w.rt.forget(context.WithoutCancel(ctx), w.clientID)
	}
	w.ResponseWriter.WriteHeader(code)
}

// seal returns the client's id for the MCP server's new session up.
func (w *sealWriter) seal(up string) (string, error) {
	return w.rt.sealer.Seal(Claims{
		Owner: w.rt.self, Upstream: up, Issuer: w.rt.issuer, Subject: w.subject,
		Expiry: w.rt.now().Add(w.rt.ttl),
	})
}

// keep stores the initialize request of the session the client knows as
// sealed, for replay.
func (w *sealWriter) keep(sealed string) {
	ctx := context.WithoutCancel(w.r.Context())
	if err := w.rt.replay.Put(ctx, hashKey(replayPrefix, sealed), w.initialize, w.rt.ttl); err != nil {
		// The session works; only a replay of it will not.
		w.rt.logFor(ctx).Warn("store MCP initialize for replay", zap.Error(err))
	}
}

func (w *sealWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Flush keeps streaming (SSE) responses flowing.
func (w *sealWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// finish runs the header hook for a handler that wrote nothing.
func (w *sealWriter) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *sealWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var _ http.Flusher = (*sealWriter)(nil)
