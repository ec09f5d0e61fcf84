// Package proxy forwards authenticated requests to the MCP server on
// localhost: streaming (Streamable HTTP, SSE) and WebSocket pass through
// untouched, identity headers are set from the authenticated caller after
// every client-supplied spelling of them is removed, and an upstream that is
// restarting is ridden out with retries and a circuit breaker.
//
// It is a thin policy layer over net/http/httputil.ReverseProxy, which does
// the forwarding, hop-by-hop handling, protocol upgrades (WebSocket only:
// see onlyWebSocketUpgrade) and flushing.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/sizedbody"
)

// Observer receives the events operators graph (typically a Prometheus
// adapter in the server package). It is declared here, where it is used, so
// the proxy does not depend on a metrics library. Implementations must be
// safe for concurrent use and must not block.
type Observer interface {
	// UpstreamError is called once per failed forward with one of the
	// ErrorKind* constants.
	UpstreamError(kind string)
	// BreakerStateChanged is called with BreakerClosed, BreakerOpen or
	// BreakerHalfOpen on every transition.
	BreakerStateChanged(state string)
	// StreamOpened is called when an SSE (text/event-stream) response starts.
	StreamOpened()
	// StreamClosed is called exactly once for every StreamOpened.
	StreamClosed()
}

// Kinds passed to Observer.UpstreamError.
const (
	ErrorKindConnect     = "connect"
	ErrorKindCircuitOpen = "circuit_open"
	ErrorKindTimeout     = "timeout"
	ErrorKindCanceled    = "client_canceled"
	ErrorKindOther       = "other"
)

// Options configure a Proxy. Only Upstream is required.
type Options struct {
	// Upstream is the MCP server, e.g. http://127.0.0.1:3000. Its path, if
	// any, is prefixed to every request path. The forwarded Host header is
	// the upstream's host, which keeps localhost servers with DNS-rebinding
	// protection (the MCP SDKs) happy; the client's host goes in
	// X-Forwarded-Host.
	Upstream *url.URL
	// Headers names the identity headers. The zero value means
	// DefaultHeaderNames(). They can be changed later with SetHeaders.
	Headers HeaderNames
	// StripCookies are cookie names removed from the forwarded Cookie header;
	// the proxy's own session cookie must never reach the upstream. A name
	// ending in "*" matches by prefix (chunked cookies).
	StripCookies []string
	// StripHeaders are request headers removed (in any spelling) before
	// forwarding, typically "Authorization": the client's token is for the
	// proxy, not for the MCP server.
	StripHeaders []string
	// AssertionHeader names the header carrying the signed identity
	// assertion (resource.AssertionHeader). It is removed in any spelling
	// from every request, whatever its peer, and set only from
	// identity.AssertionFromContext. Empty means the proxy knows of no
	// assertion header (it is then only stripped if listed in StripHeaders).
	AssertionHeader string
	// TrustForwarded decides per request whether its direct peer is a
	// trusted ingress (typically forwarded.TrustedProxies.Trusts). For such a
	// request the incoming X-Forwarded-For is kept and this hop's peer
	// appended, and the incoming X-Forwarded-Host/-Proto/-Port/-Prefix and
	// X-Real-IP are kept, so the upstream sees the public scheme, host and
	// client rather than this hop's. For every other request (and when nil)
	// X-Forwarded-For/-Host/-Proto are replaced with what this hop saw and
	// the others removed, so clients cannot forge their address or the
	// public URL. Every other forwarding header (X-Original-URL,
	// True-Client-IP, Forwarded, ...) is removed from every request.
	TrustForwarded func(r *http.Request) bool
	// Retry configures retries of idempotent requests while the upstream is
	// restarting.
	Retry RetryOptions
	// Breaker configures fail-fast behaviour while the upstream is down.
	Breaker BreakerOptions
	// Transport sends requests upstream. Nil means DefaultTransport(
	// ResponseHeaderTimeout). Retries and the breaker wrap whatever is given.
	Transport http.RoundTripper
	// ResponseHeaderTimeout bounds the wait for the upstream's response
	// headers when Transport is nil. Zero means no limit: MCP tool calls
	// answered over SSE may legitimately take minutes to start.
	ResponseHeaderTimeout time.Duration
	// Logger receives upstream errors and breaker transitions. Nil means no
	// logging.
	Logger *zap.Logger
	// Observer receives metrics events. Nil means none.
	Observer Observer
}

// Proxy is an http.Handler forwarding already-authenticated requests to the
// upstream MCP server. The caller must have put the identity into the
// request context (identity.NewContext); a request without one is
// forwarded anonymously, with every identity header removed.
type Proxy struct {
	upstream  *url.URL
	trustFwd  func(r *http.Request) bool
	policy    atomic.Pointer[headerPolicy]
	strip     []string
	assertion string
	cookies   *cookieFilter
	rp        *httputil.ReverseProxy
	// streamRP is rp with small copy buffers, for requests that open an
	// event stream (see opensEventStream).
	streamRP *httputil.ReverseProxy
	logger   *zap.Logger
	obs      Observer
}

var _ http.Handler = (*Proxy)(nil)

// New validates opts and builds a Proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Upstream == nil {
		return nil, errors.New("proxy: upstream URL is required")
	}
	if opts.Upstream.Scheme != "http" && opts.Upstream.Scheme != "https" {
		return nil, fmt.Errorf("proxy: upstream %q: scheme must be http or https", opts.Upstream.Redacted())
	}
	if opts.Upstream.Host == "" {
		return nil, fmt.Errorf("proxy: upstream %q: host is required", opts.Upstream.Redacted())
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	logger = logger.With(zap.String("component", "proxy"))
	obs := opts.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	p := &Proxy{
		upstream:  opts.Upstream,
		trustFwd:  opts.TrustForwarded,
		strip:     append([]string(nil), opts.StripHeaders...),
		assertion: opts.AssertionHeader,
		cookies:   newCookieFilter(opts.StripCookies),
		logger:    logger,
		obs:       obs,
	}
	p.SetHeaders(opts.Headers)

	// Event-stream GETs get their own connections with smaller buffers
	// (streamTransport); both share one breaker, since they reach the same
	// upstream.
	var rt, streamRT http.RoundTripper = opts.Transport, opts.Transport
	if rt == nil {
		rt = DefaultTransport(opts.ResponseHeaderTimeout)
		streamRT = streamTransport(opts.ResponseHeaderTimeout)
	}
	var b *breaker
	if opts.Breaker.Failures >= 0 {
		b = newBreaker(opts.Breaker, func(state string) {
			logger.Warn("upstream circuit breaker changed state", zap.String("state", state))
			obs.BreakerStateChanged(state)
		})
	}
	wrap := func(rt http.RoundTripper) http.RoundTripper {
		rt = &retryTransport{next: rt, opts: opts.Retry.withDefaults(), logger: logger}
		if b != nil {
			rt = &breakerTransport{next: rt, b: b, logger: logger}
		}
		return rt
	}
	rt, streamRT = wrap(rt), wrap(streamRT)

	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: rt,
		// 0 leaves flushing to ReverseProxy, which flushes SSE
		// (text/event-stream) and bodies of unknown length (chunked
		// streams) after every write, so each event reaches the client
		// when the upstream sends it; a body with a Content-Length (a
		// JSON-RPC answer) is written in one go when it is complete. -1
		// would also flush those, which costs every small answer an extra
		// goroutine, timer and write syscall (bench/results-fast.md).
		FlushInterval:  0,
		BufferPool:     &bufferPool{},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.handleError,
		// ReverseProxy's own messages are about copy errors after headers
		// were sent, almost always a client that disconnected mid-stream.
		ErrorLog: zap.NewStdLog(logger),
	}
	stream := *p.rp
	stream.BufferPool = &streamBufferPool{}
	stream.Transport = streamRT
	p.streamRP = &stream
	return p, nil
}

// copyBufferSize is the size of the buffer ReverseProxy copies each
// response body through. It is held for as long as the body is copied,
// which for an SSE stream is the stream's whole life, so it is what every
// held stream costs; ReverseProxy's own default is a fresh 32 KiB per
// response. MCP messages and SSE events are mostly far smaller; a large
// body just takes more, still large, reads.
const copyBufferSize = 8 << 10

// bufferPool recycles a Proxy's copy buffers (httputil.BufferPool). It
// pools array pointers, so neither Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return buf[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}

// streamCopyBufferSize is the copy buffer of a request that opens an event
// stream (opensEventStream): a held stream keeps its buffer for as long as
// it is open, however rarely events come, and SSE events are small. A
// larger event is still forwarded whole, in more reads and writes (each
// flushed at once, as ReverseProxy does for event streams).
const streamCopyBufferSize = 2 << 10

// streamBufferPool is bufferPool for the stream copy buffers.
type streamBufferPool struct{ p sync.Pool }

func (b *streamBufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[streamCopyBufferSize]byte); ok {
		return buf[:]
	}
	return new([streamCopyBufferSize]byte)[:]
}

func (b *streamBufferPool) Put(buf []byte) {
	if len(buf) == streamCopyBufferSize {
		b.p.Put((*[streamCopyBufferSize]byte)(buf))
	}
}

// opensEventStream reports whether r asks for an event stream that may be
// held open for long: a GET accepting text/event-stream (the Streamable HTTP
// transport's standalone stream, and the older HTTP+SSE transport's
// stream). A POST is answered with a JSON-RPC result, as JSON or as a short
// stream of events, and keeps the larger buffer.
func opensEventStream(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, v := range r.Header["Accept"] {
		for part := range strings.SplitSeq(v, ",") {
			if mt, _, _ := strings.Cut(part, ";"); strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

// Transport buffer sizes: the upstream connection's bufio reader and
// writer live as long as the connection, which for a held stream is the
// stream's life. MCP requests and SSE event lines fit comfortably; longer
// headers and bodies are still read and written whole, in more calls.
const (
	transportReadBufferSize  = 2 << 10
	transportWriteBufferSize = 2 << 10
)

// DefaultTransport is the upstream transport used when Options.Transport is
// nil: a clone of http.DefaultTransport tuned for one local HTTP/1.1 upstream
// under heavy concurrency.
func DefaultTransport(responseHeaderTimeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The upstream is on localhost; an HTTP(S)_PROXY from the environment
	// must never capture that traffic.
	t.Proxy = nil
	// Every client request funnels into one host: keep enough idle
	// connections that bursts do not churn through ephemeral ports.
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	// MCP servers speak HTTP/1.1 on localhost; HTTP/2 would only add
	// framing overhead and head-of-line effects between streams.
	t.ForceAttemptHTTP2 = false
	// Pass the client's Accept-Encoding through instead of transparently
	// negotiating gzip, which would re-chunk streamed SSE responses.
	t.DisableCompression = true
	t.ResponseHeaderTimeout = responseHeaderTimeout
	t.ReadBufferSize = transportReadBufferSize
	t.WriteBufferSize = transportWriteBufferSize
	return t
}

// Buffer sizes of the upstream connections that carry event streams
// (opensEventStream): such a connection is held for the stream's life and
// carries one small GET and then events; longer headers and events still
// pass whole, in more calls.
const (
	streamTransportReadBufferSize  = 1 << 10
	streamTransportWriteBufferSize = 1 << 10
)

// streamTransport is DefaultTransport with the smaller buffers of
// event-stream connections.
func streamTransport(responseHeaderTimeout time.Duration) *http.Transport {
	t := DefaultTransport(responseHeaderTimeout)
	t.ReadBufferSize = streamTransportReadBufferSize
	t.WriteBufferSize = streamTransportWriteBufferSize
	return t
}

// SetHeaders replaces the identity header names; safe to call while serving
// (configuration reload). Names with all five fields empty mean
// DefaultHeaderNames() (keeping names.Extra).
func (p *Proxy) SetHeaders(names HeaderNames) {
	if names.User == "" && names.Email == "" && names.Groups == "" && names.Name == "" && names.Username == "" {
		extra := names.Extra
		names = DefaultHeaderNames()
		names.Extra = extra
	}
	p.policy.Store(newHeaderPolicy(names, p.strip, p.assertion))
}

// Headers returns the identity header names currently in use.
func (p *Proxy) Headers() HeaderNames {
	return p.policy.Load().names
}

// ServeHTTP forwards r to the upstream.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if opensEventStream(r) {
		p.streamRP.ServeHTTP(w, r)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// rewrite is the ReverseProxy Rewrite hook. ReverseProxy has already
// removed hop-by-hop headers (keeping Connection/Upgrade for any requested
// protocol upgrade) and the canonical forwarding headers.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.upstream)
	// The body ends at its Content-Length, so the transport's check for
	// more never reads the client's body after the server closed it
	// (pkg/sizedbody).
	pr.Out.Body = sizedbody.New(pr.Out.Body, pr.Out.ContentLength)
	policy := p.policy.Load()
	out := pr.Out.Header
	onlyWebSocketUpgrade(out)
	// First remove every spelling of every header we manage, then set ours.
	policy.stripFrom(out)
	p.cookies.apply(out)

	trusted := p.trustFwd != nil && p.trustFwd(pr.In)
	if trusted {
		if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
			out["X-Forwarded-For"] = append([]string(nil), xff...)
		}
	}
	pr.SetXForwarded()
	if trusted {
		// Only the canonical spelling, and only its first value: what a
		// well-behaved ingress sets. The slices are shared with the incoming
		// request (capped, so an append can never write into it).
		for _, k := range trustedForwarding[1:] {
			if vs := pr.In.Header[k]; len(vs) > 0 && vs[0] != "" {
				out[k] = vs[:1:1]
			}
		}
	}

	ctx := pr.In.Context()
	policy.setIdentity(out, identity.FromContext(ctx))
	policy.setAssertion(out, ctx)
	if id := requestid.FromContext(ctx); id != "" {
		out.Set(requestid.Header, id)
	}
}

// modifyResponse counts SSE streams. Statuses and bodies are never touched:
// the MCP transport gives meaning to the upstream's 202/400/404/405.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	// The client already has this request's ID (the request ID middleware
	// set it on the response); an upstream that echoes it, or invents its
	// own, would otherwise add a second X-Request-ID value.
	if resp.Request != nil && requestid.FromContext(resp.Request.Context()) != "" {
		resp.Header.Del(requestid.Header)
	}
	// A 101 body is the raw upgraded connection, which ReverseProxy needs
	// as an io.ReadWriteCloser: never wrap it.
	if resp.StatusCode == http.StatusSwitchingProtocols || !isEventStream(resp.Header.Get("Content-Type")) {
		return nil
	}
	p.obs.StreamOpened()
	resp.Body = &streamBody{ReadCloser: resp.Body, closed: p.obs.StreamClosed}
	return nil
}

func isEventStream(contentType string) bool {
	const sse = "text/event-stream"
	ct := strings.TrimSpace(contentType)
	return len(ct) >= len(sse) && strings.EqualFold(ct[:len(sse)], sse) &&
		(len(ct) == len(sse) || ct[len(sse)] == ';' || ct[len(sse)] == ' ')
}

// streamBody reports the end of an SSE stream exactly once.
type streamBody struct {
	io.ReadCloser
	once   sync.Once
	closed func()
}

func (b *streamBody) Close() error {
	b.once.Do(b.closed)
	return b.ReadCloser.Close()
}

// handleError is the ReverseProxy ErrorHandler: it maps transport errors to
// the proxy's JSON errors. It only runs when no upstream response was
// received, so it never replaces an upstream status.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	fields := []zap.Field{
		zap.String("request_id", requestid.FromContext(r.Context())),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.Error(err),
	}
	var netErr net.Error
	switch {
	case errors.Is(err, ErrCircuitOpen):
		p.obs.UpstreamError(ErrorKindCircuitOpen)
		p.logger.Debug("upstream circuit open, failing fast", fields...)
		apierror.Write(w, r, http.StatusServiceUnavailable, apierror.CodeCircuitOpen,
			"upstream MCP server is unavailable; retry shortly")
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		// The client went away: nobody to answer. Logged as nginx's 499.
		p.obs.UpstreamError(ErrorKindCanceled)
		p.logger.Info("client closed request", append(fields, zap.Int("status", 499))...)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		p.obs.UpstreamError(ErrorKindTimeout)
		p.logger.Warn("upstream timed out", fields...)
		apierror.Write(w, r, http.StatusGatewayTimeout, apierror.CodeUpstreamTimeout,
			"upstream MCP server did not answer in time")
	case isConnFailure(err):
		p.obs.UpstreamError(ErrorKindConnect)
		p.logger.Warn("upstream not reachable", fields...)
		apierror.Write(w, r, http.StatusBadGateway, apierror.CodeBadGateway,
			"upstream MCP server is not reachable")
	default:
		p.obs.UpstreamError(ErrorKindOther)
		p.logger.Error("upstream request failed", fields...)
		apierror.Write(w, r, http.StatusBadGateway, apierror.CodeBadGateway,
			"upstream MCP server failed to answer")
	}
}

// nopObserver is used when Options.Observer is nil.
type nopObserver struct{}

var _ Observer = nopObserver{}

func (nopObserver) UpstreamError(string)       {}
func (nopObserver) BreakerStateChanged(string) {}
func (nopObserver) StreamOpened()              {}
func (nopObserver) StreamClosed()              {}
