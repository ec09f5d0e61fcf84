package mcpsession

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/sizedbody"
)

type hopOutcome int

const (
	// hopDone: the client has its answer (the owner's, or 404).
	hopDone hopOutcome = iota
	// hopUnreachable: nothing reached the owner and nothing was written;
	// the request may be served another way.
	hopUnreachable
)

type hopKey struct{}

// hopState is one hop, shared with the ReverseProxy callbacks through the
// request's context.
type hopState struct {
	owner string
	// clientID is the client's session id; sentID the one sent to the
	// owner (a rebinding's id after a replay, else clientID).
	clientID, sentID string
	creds            *credentials
	// sent is set once the whole request went out on the last attempt:
	// from then on the owner may act on it, so it must not be served
	// anywhere else. A request whose writing failed (a kept-alive
	// connection the owner had closed) did not reach a handler whole.
	sent   atomic.Bool
	err    error
	status int
}

// forwardedHeaders are kept as received: ReverseProxy's Rewrite mode drops
// them, but the owner must see the request as this replica saw it.
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// newProxy is the one-hop reverse proxy to session owners.
func (rt *Router) newProxy(transport http.RoundTripper) *httputil.ReverseProxy {
	// Copy errors of a hop's response (a client or owner gone while
	// streaming) are routine.
	errLog, err := zap.NewStdLogAt(rt.log.Named("hop"), zap.DebugLevel)
	if err != nil {
		errLog = zap.NewStdLog(rt.log.Named("hop"))
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := pr.In.Context().Value(hopKey{}).(*hopState)
			pr.Out.URL.Scheme = rt.scheme
			pr.Out.URL.Host = st.owner
			// The Host as the client sent it: the owner checks it like any
			// request's.
			pr.Out.Host = pr.In.Host
			for _, k := range forwardedHeaders {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
			if st.creds != nil {
				setValues(pr.Out.Header, "Authorization", st.creds.authorization)
				setValues(pr.Out.Header, "Cookie", st.creds.cookie)
			}
			pr.Out.Header.Set(HopHeader, "1")
			if id := requestid.FromContext(pr.In.Context()); id != "" {
				pr.Out.Header.Set(requestid.Header, id)
			}
			pr.Out.Header.Set(SessionHeader, st.sentID)
		},
		Transport:  transport,
		BufferPool: &bufferPool{},
		// Every write is flushed at once: SSE responses stream through.
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			st := resp.Request.Context().Value(hopKey{}).(*hopState)
			st.status = resp.StatusCode
			if st.sentID != st.clientID && resp.Header.Get(SessionHeader) == st.sentID {
				resp.Header.Set(SessionHeader, st.clientID)
			}
			rt.observer.Hop(ResultForwarded)
			return nil
		},
		ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) {
			// Nothing is written: hop decides what the client gets.
			r.Context().Value(hopKey{}).(*hopState).err = err
		},
		ErrorLog: errLog,
	}
}

// bufferPool reuses the hops' 32 KiB copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

func setValues(h http.Header, name string, values []string) {
	if len(values) == 0 {
		h.Del(name)
		return
	}
	h[name] = values
}

// hop forwards r to owner, sending sentID as its session id. It returns
// hopUnreachable, having written nothing, when the owner could not be
// reached before anything was sent.
func (rt *Router) hop(w http.ResponseWriter, r *http.Request, owner, clientID, sentID string) hopOutcome {
	start := time.Now()
	st := &hopState{owner: owner, clientID: clientID, sentID: sentID}
	st.creds, _ = r.Context().Value(credKey{}).(*credentials)
	ctx := context.WithValue(r.Context(), hopKey{}, st)
	// sent tells whether the last attempt (the transport retries on a
	// fresh connection when a kept-alive one was closed) sent anything.
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn:      func(string) { st.sent.Store(false) },
		WroteRequest: func(info httptrace.WroteRequestInfo) { st.sent.Store(info.Err == nil) },
	})
	out := r.WithContext(ctx)
	var body *rewindBody
	if r.Body != nil && r.Body != http.NoBody {
		// Ended at its Content-Length: the transport's check for more
		// must not read the client's body after the server closed it
		// (pkg/sizedbody).
		body = newRewindBody(sizedbody.New(r.Body, r.ContentLength))
		first, _ := body.reader()
		out.Body = first
		out.GetBody = body.reader
	}
	rt.proxy.ServeHTTP(w, out)

	log := rt.logFor(r.Context()).With(zap.String("owner", owner), zap.String("session", shortHash(clientID)))
	switch {
	case st.err == nil:
		log.Debug("mcp session hop", zap.String("result", ResultForwarded), zap.Int("status", st.status), zap.Duration("duration", time.Since(start)))
		if r.Method == http.MethodDelete && st.status >= 200 && st.status < 300 {
			rt.forget(context.WithoutCancel(r.Context()), clientID)
		}
		return hopDone
	case r.Context().Err() != nil:
		log.Debug("mcp session hop", zap.String("result", "client_gone"), zap.Duration("duration", time.Since(start)))
		return hopDone
	}
	rt.dead.mark(owner, rt.now())
	if !st.sent.Load() || closedIdle(st.err) {
		rewound := true
		if body != nil {
			rc, err := body.reader()
			if err == nil {
				r.Body = rc
			}
			rewound = err == nil
		}
		if rewound {
			log.Debug("mcp session hop", zap.String("result", "unreachable"), zap.Error(st.err), zap.Duration("duration", time.Since(start)))
			return hopUnreachable
		}
	}
	// The owner may have acted on the request: it is not served again
	// elsewhere; the client starts over.
	rt.observer.Hop(ResultOwnerGone)
	log.Debug("mcp session hop", zap.String("result", ResultOwnerGone), zap.Error(st.err), zap.Duration("duration", time.Since(start)))
	writeNotFound(w)
	return hopDone
}

// closedIdle reports the transport's error for a request that raced with
// the owner closing the kept-alive connection it went out on: the owner
// closed it as idle, so it never read the request. The transport retries
// such requests itself only when they are idempotent; a tool call is
// not, and a retry after any other broken connection could run it twice.
// The error is not exported; its text has been stable since Go 1.8.
func closedIdle(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "http: server closed idle connection" {
			return true
		}
	}
	return false
}

// errDetached is what an earlier reader of a request body gets once the
// body went on to a retry or another way.
var errDetached = errors.New("mcpsession: request body taken over by a retry")

// errTooLongToRewind refuses a rewind of a body longer than maxRewind.
var errTooLongToRewind = errors.New("mcpsession: request body too long to send again")

// maxRewind bounds what rewindBody keeps of a request body (MCP messages
// are far smaller).
const maxRewind = 1 << 20

// rewindBody lends a request body to a hop and can hand it out again from
// its start: to the transport's own retry on a fresh connection (when
// nothing was written on a kept-alive connection that turned out to be
// closed) or to serving the request here when the owner could not be
// reached. It keeps what was read, up to
// maxRewind; each reader it hands out ends the previous one. Closing a
// reader leaves the body open (the transport closes bodies, also when it
// fails; the server closes the request's).
type rewindBody struct {
	mu       sync.Mutex
	src      io.Reader
	kept     []byte
	overflow bool
	gen      int
}

func newRewindBody(src io.Reader) *rewindBody { return &rewindBody{src: src} }

// reader hands out the body from its start, or fails when too much of it
// was read to keep.
func (b *rewindBody) reader() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.overflow {
		return nil, errTooLongToRewind
	}
	b.gen++
	return &rewindReader{b: b, gen: b.gen}, nil
}

type rewindReader struct {
	b   *rewindBody
	gen int
	pos int
}

func (r *rewindReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.gen != b.gen {
		return 0, errDetached
	}
	if !b.overflow && r.pos < len(b.kept) {
		n := copy(p, b.kept[r.pos:])
		r.pos += n
		return n, nil
	}
	n, err := b.src.Read(p)
	if n > 0 {
		if !b.overflow && len(b.kept)+n <= maxRewind {
			b.kept = append(b.kept, p[:n]...)
		} else {
			b.overflow, b.kept = true, nil
		}
		r.pos += n
	}
	return n, err
}

func (r *rewindReader) Close() error { return nil }

// deadOwners remembers owners a hop could not reach, for deadFor, so that
// requests of their sessions do not each wait for a dial to fail.
type deadOwners struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (d *deadOwners) mark(owner string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.until == nil {
		d.until = map[string]time.Time{}
	}
	if len(d.until) >= maxDeadOwners {
		for o, t := range d.until {
			if !now.Before(t) {
				delete(d.until, o)
			}
		}
		if len(d.until) >= maxDeadOwners {
			// Forgetting costs a dial per owner, not correctness.
			clear(d.until)
		}
	}
	d.until[owner] = now.Add(deadFor)
}

func (d *deadOwners) isDead(owner string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.until[owner]
	if ok && !now.Before(t) {
		delete(d.until, owner)
		return false
	}
	return ok
}
