package mcpsession

// Initialize replay (opt-in, Options.Replay). When a session's owner is
// gone, this replica sends the session's stored initialize request and
// notifications/initialized to its own MCP server, and maps the client's
// id to the new session (the rebinding, kept in the store for the rest of
// the id's life, so every replica finds it). What the gone MCP server kept
// in memory for the session (subscriptions, resumable streams, tool state)
// is not carried over: only the handshake is replayed.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// maxReplayResponse bounds the initialize response read during a replay.
const maxReplayResponse = 1 << 20

var initializedBody = []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)

// replaySession starts the session sid (claims c, owner gone) again on
// this replica and returns the claims of the new session.
func (rt *Router) replaySession(r *http.Request, next http.Handler, sid string, c Claims) (Claims, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), rt.replayTimeout)
	defer cancel()
	// A replay that finished just before this flight began.
	if c2, _, ok := rt.rebinding(ctx, sid, c); ok && c2.Owner == rt.self {
		return c2, nil
	}
	body, err := rt.replay.Get(ctx, hashKey(replayPrefix, sid))
	if err != nil {
		return Claims{}, fmt.Errorf("read stored initialize: %w", err)
	}
	upstream, err := rt.reinitialize(ctx, r, next, body)
	if err != nil {
		return Claims{}, err
	}
	c2 := Claims{Owner: rt.self, Upstream: upstream, Issuer: c.Issuer, Subject: c.Subject, Expiry: c.Expiry}
	s2, err := rt.sealer.Seal(c2)
	if err != nil {
		return Claims{}, err
	}
	if ttl := c.Expiry.Sub(rt.now()); ttl > 0 {
		if err := rt.replay.Put(ctx, hashKey(rebindPrefix, sid), []byte(s2), ttl); err != nil {
			// This request is served; the session's next request on
			// another replica (or after this one forgets) replays again.
			rt.logFor(ctx).Warn("store MCP session rebinding", zap.Error(err))
		}
	}
	rt.observer.Hop(ResultReplayed)
	rt.logFor(ctx).Debug("mcp session replayed", zap.String("session", shortHash(sid)), zap.String("owner", c.Owner))
	return c2, nil
}

// reinitialize sends body (an initialize request) and then
// notifications/initialized through next, as r's caller, and returns the
// new session's MCP server id.
func (rt *Router) reinitialize(ctx context.Context, r *http.Request, next http.Handler, body []byte) (string, error) {
	init := syntheticRequest(ctx, r, body)
	rec := newCapture()
	next.ServeHTTP(rec, init)
	if rec.status < 200 || rec.status > 299 {
		return "", fmt.Errorf("replayed initialize: status %d", rec.status)
	}
	upstream := rec.header.Get(SessionHeader)
	if upstream == "" {
		return "", errors.New("replayed initialize: no session id in the response")
	}
	version, err := initializeResult(rec.header.Get("Content-Type"), rec.body.Bytes())
	if err != nil {
		return "", fmt.Errorf("replayed initialize: %w", err)
	}
	if version == "" {
		version = r.Header.Get("Mcp-Protocol-Version")
	}
	note := syntheticRequest(ctx, r, initializedBody)
	note.Header.Set(SessionHeader, upstream)
	if version != "" {
		note.Header.Set("Mcp-Protocol-Version", version)
	}
	rec = newCapture()
	next.ServeHTTP(rec, note)
	if rec.status < 200 || rec.status > 299 {
		return "", fmt.Errorf("replayed notifications/initialized: status %d", rec.status)
	}
	return upstream, nil
}

// syntheticRequest is a POST of body to r's path and query, with r's
// headers (the caller's, as authentication left them) but no session.
func syntheticRequest(ctx context.Context, r *http.Request, body []byte) *http.Request {
	req := r.Clone(ctx)
	req.Method = http.MethodPost
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
	h := req.Header
	for _, k := range []string{SessionHeader, HopHeader, "Last-Event-Id", "Mcp-Protocol-Version", "Content-Length", "Content-Encoding", "Transfer-Encoding"} {
		h.Del(k)
	}
	req.TransferEncoding = nil
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	return req
}

// initializeResult checks the answer to an initialize request (JSON or
// SSE) and returns the negotiated protocol version.
func initializeResult(contentType string, body []byte) (string, error) {
	var msgs [][]byte
	if strings.HasPrefix(contentType, "text/event-stream") {
		msgs = sseData(body)
	} else {
		msgs = [][]byte{body}
	}
	for _, m := range msgs {
		var resp struct {
			ID     json.RawMessage `json:"id"`
			Result *struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"result"`
			Error *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(m, &resp) != nil || len(resp.ID) == 0 {
			continue
		}
		if resp.Error != nil {
			return "", fmt.Errorf("error %d: %s", resp.Error.Code, resp.Error.Message)
		}
		if resp.Result != nil {
			return resp.Result.ProtocolVersion, nil
		}
	}
	return "", errors.New("no initialize result in the response")
}

// sseData returns the data of each event in an SSE body.
func sseData(body []byte) [][]byte {
	var out [][]byte
	var cur []byte
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), maxReplayResponse)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if cur != nil {
				out = append(out, cur)
				cur = nil
			}
		case bytes.HasPrefix(line, []byte("data:")):
			d := bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))
			if cur != nil {
				cur = append(cur, '\n')
			}
			cur = append(cur, d...)
		}
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

// capture is the ResponseWriter of a synthetic request: it keeps the
// status, headers and up to maxReplayResponse bytes of body.
type capture struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newCapture() *capture { return &capture{header: http.Header{}} }

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if room := maxReplayResponse - c.body.Len(); room > 0 {
		c.body.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Flush is a no-op: the whole response is read once the handler returns.
func (c *capture) Flush() {}

// flights runs one replay per session at a time on this replica: requests
// of the session arriving meanwhile wait for it and share its result, so
// they do not start one session each.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	c    Claims
	err  error
	// waiters counts the requests waiting for it (tests observe it).
	waiters int
}

func (f *flights) do(ctx context.Context, key string, fn func() (Claims, error)) (Claims, error) {
	f.mu.Lock()
	if fl, ok := f.m[key]; ok {
		fl.waiters++
		f.mu.Unlock()
		select {
		case <-fl.done:
			return fl.c, fl.err
		case <-ctx.Done():
			return Claims{}, ctx.Err()
		}
	}
	if f.m == nil {
		f.m = map[string]*flight{}
	}
	fl := &flight{done: make(chan struct{}), err: errors.New("mcpsession: replay did not finish")}
	f.m[key] = fl
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.m, key)
		f.mu.Unlock()
		close(fl.done)
	}()
	fl.c, fl.err = fn()
	return fl.c, fl.err
}
