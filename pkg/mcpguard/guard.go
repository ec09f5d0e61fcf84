// Package mcpguard is the HTTP middleware on the MCP route that applies the
// tool-level policy and writes the audit trail on real MCP traffic. It
// reads and strictly parses JSON-RPC request bodies, decides governed
// requests (tools/call, prompts/get, resources/read) on the exact bytes it
// forwards, answers denials itself as JSON-RPC errors, splits and merges
// batches, checks the 2026-07-28 Mcp-Method and Mcp-Name headers against
// the body, filters tools/prompts/resources list responses (JSON and SSE)
// and produces one audit entry per JSON-RPC request.
//
// With no policy and auditing off it costs one atomic load per request:
// bodies are never read.
package mcpguard

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// JSON-RPC error codes the guard answers with.
const (
	// CodeDenied answers a governed request the policy denied (JSON-RPC
	// "invalid params": the name the client asked for is not one it may
	// use), with HTTP 200 so MCP clients show it as a tool error instead
	// of hanging or re-authenticating as they do on 401/403.
	CodeDenied = -32602
	// CodeHeaderMismatch answers a 2026-07-28 request whose Mcp-Method or
	// Mcp-Name header disagrees with its body, as the MCP spec (and the
	// Go SDK's server) require, with HTTP 400.
	CodeHeaderMismatch = -32020
	// CodeInvalidRequest answers a body that is JSON but not an acceptable
	// JSON-RPC message (duplicate keys, too large, compressed).
	CodeInvalidRequest = -32600
	// CodeParseError answers a body that is not JSON.
	CodeParseError = -32700
	// CodeListUnfiltered replaces a list response the guard could not
	// filter (larger than max_list_bytes, or compressed): the caller gets
	// an error, never the unfiltered list.
	CodeListUnfiltered = -32603
)

// Binding is a policy bound to one caller. *mcppolicy.Bound satisfies it.
type Binding interface {
	// Decide allows or denies one governed request.
	Decide(*mcppolicy.Request) mcppolicy.Decision
	// Visible reports whether a list shows the caller the item: method is
	// the governed method the list is for (tools/call for tools/list,
	// prompts/get for prompts/list, resources/read for resources/list),
	// name the tool or prompt name or the resource URI.
	Visible(method, name string) bool
}

// Policy binds the configured rules to a caller, once per HTTP request.
type Policy interface {
	Bind(*mcppolicy.Caller) Binding
}

// PolicyFunc adapts a function to Policy, e.g.
// PolicyFunc(func(c *mcppolicy.Caller) Binding { return p.Bind(c) }) for a
// *mcppolicy.Policy.
type PolicyFunc func(*mcppolicy.Caller) Binding

// Bind calls f.
func (f PolicyFunc) Bind(c *mcppolicy.Caller) Binding { return f(c) }

// Recorder receives the audit entries (the audit logger, which also counts
// the requests metric).
type Recorder interface {
	Record(audit.Entry)
}

// Options configure a Guard.
type Options struct {
	// Recorder receives audit entries; nil records nothing.
	Recorder Recorder
	// Logger gets operational errors (never bodies or tokens).
	Logger *zap.Logger
	// Now is the clock for audit times and durations (default time.Now).
	Now func() time.Time
}

// Settings are the hot-reloadable part, swapped atomically by Set.
type Settings struct {
	// Policy decides governed requests and filters lists; nil means no
	// rules.
	Policy Policy
	// Audit records every request even without rules.
	Audit bool
	// MaxBodyBytes caps the request body the guard reads
	// (policy.max_body_bytes); a larger body is refused with 413.
	MaxBodyBytes int
	// MaxListBytes caps a list response (or SSE event) the guard rewrites
	// (policy.max_list_bytes); a larger one is replaced by an error.
	MaxListBytes int
}

// Defaults for zero Settings limits (the configuration's defaults).
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxListBytes = 8 << 20
)

// Guard is the middleware. Its zero value is not usable; call New.
type Guard struct {
	rec Recorder
	log *zap.Logger
	now func() time.Time
	cur atomic.Pointer[Settings]
}

// New returns a Guard that passes everything through until Set.
func New(opts Options) *Guard {
	g := &Guard{rec: opts.Recorder, log: opts.Logger, now: opts.Now}
	if g.log == nil {
		g.log = zap.NewNop()
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g
}

// Set installs new settings; requests already in flight keep the ones they
// started with.
func (g *Guard) Set(s Settings) {
	if s.MaxBodyBytes <= 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if s.MaxListBytes <= 0 {
		s.MaxListBytes = DefaultMaxListBytes
	}
	if s.Policy == nil && (!s.Audit || g.rec == nil) {
		g.cur.Store(nil)
		return
	}
	g.cur.Store(&s)
}

// Active reports whether requests are parsed (a policy or auditing is on).
func (g *Guard) Active() bool { return g.cur.Load() != nil }

// Wrap returns next behind the guard. Only POST requests carry JSON-RPC
// messages from the client; GET (the server's stream) and DELETE (session
// end) pass untouched when they have no body. A request of any other
// method with a body is refused while the guard is active (refuseBody).
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := g.cur.Load()
		switch {
		case s == nil:
			next.ServeHTTP(w, r)
		case r.Method == http.MethodPost:
			g.serve(s, next, w, r)
		case r.ContentLength != 0:
			g.refuseBody(s, w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// refuseBody refuses a request with a body whose method is not POST (GET,
// DELETE, PUT, a lower-case "post", ...; ContentLength is -1 for a chunked
// body). MCP sends messages only in POST bodies, and the guard decides only
// those: forwarded, such a body would reach the MCP server undecided, and a
// server that honours X-HTTP-Method-Override, matches methods ignoring case
// or reads bodies whatever the method would run a call the policy denies.
func (g *Guard) refuseBody(s *Settings, w http.ResponseWriter, r *http.Request) {
	x := &exchange{g: g, s: s, r: r, start: g.now(), recording: g.rec != nil}
	if id := identity.FromContext(r.Context()); id != nil {
		x.caller = callerOf(id, bearer.FromContext(r.Context()))
	}
	x.invalid(w, http.StatusBadRequest, nil, CodeInvalidRequest,
		"a request body is accepted only with POST: MCP messages are POSTed, and the policy decides those", nil)
}

// exchange is one HTTP request being guarded.
type exchange struct {
	g      *Guard
	s      *Settings
	r      *http.Request
	start  time.Time
	bind   Binding // nil without a policy
	caller *mcppolicy.Caller
	// recording: audit entries are wanted.
	recording bool
	// pending are the audit entries of forwarded requests, by idKey,
	// waiting for their answer.
	pending map[string]*audit.Entry
	// lists maps the idKey of each forwarded list request to what its
	// answer lists.
	lists map[string]*listKind
	// denials are the proxy's own answers to denied requests of a
	// forwarded batch, merged into the upstream's response.
	denials [][]byte
	// msgs are the body's messages.
	msgs []message
}

func (g *Guard) serve(s *Settings, next http.Handler, w http.ResponseWriter, r *http.Request) {
	x := &exchange{g: g, s: s, r: r, start: g.now(), recording: g.rec != nil}
	id := identity.FromContext(r.Context())
	if id == nil {
		// The MCP route is always authenticated before the guard: a
		// missing identity is a wiring bug, and the guard fails closed.
		g.log.Error("MCP policy: request without an identity; refused", requestid.LogField(r.Context()))
		writeJSON(w, http.StatusInternalServerError, errorResponse(nil, -32603, "internal error: the request has no authenticated identity"))
		return
	}
	x.caller = callerOf(id, bearer.FromContext(r.Context()))
	if ce, ok := encoded(r.Header); ok {
		x.invalid(w, http.StatusUnsupportedMediaType, nil, CodeInvalidRequest, "request bodies with Content-Encoding "+ce+" are not accepted: the policy decides on plain JSON", nil)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, int64(s.MaxBodyBytes)+1))
	_ = r.Body.Close()
	if err != nil {
		x.invalid(w, http.StatusBadRequest, nil, CodeParseError, "could not read the request body", nil)
		return
	}
	if len(raw) > s.MaxBodyBytes {
		x.invalid(w, http.StatusRequestEntityTooLarge, nil, CodeInvalidRequest,
			fmt.Sprintf("request body larger than %d bytes (policy.max_body_bytes): refused unread", s.MaxBodyBytes), nil)
		return
	}
	b, err := parseBody(raw)
	if err != nil {
		code := CodeInvalidRequest
		if errors.Is(err, errSyntax) {
			code = CodeParseError
		}
		x.invalid(w, http.StatusBadRequest, nil, code, "invalid JSON-RPC request: "+err.Error(), nil)
		return
	}
	if m, err := checkHeaders(r.Header, b); err != nil {
		var id json.RawMessage
		if !b.batch {
			id = m.id
		}
		x.invalid(w, http.StatusBadRequest, id, CodeHeaderMismatch, err.Error(), m)
		return
	}
	if s.Policy != nil {
		x.bind = s.Policy.Bind(x.caller)
	}
	x.decide(next, w, b)
}

// encoded returns the first content coding of h other than identity, in
// every Content-Encoding header line and comma-separated list: a server
// that decodes the body by a coding the guard did not see (Header.Get
// returns only the first line) would act on other bytes than those decided.
func encoded(h http.Header) (string, bool) {
	for _, line := range h.Values("Content-Encoding") {
		for c := range strings.SplitSeq(line, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return c, true
			}
		}
	}
	return "", false
}

// decide answers denied requests and forwards the rest.
func (x *exchange) decide(next http.Handler, w http.ResponseWriter, b *body) {
	x.msgs = b.msgs
	var forward [][]byte
	var denials [][]byte
	for i := range b.msgs {
		m := &b.msgs[i]
		if m.kind == kindNotification && m.decided && x.bind != nil {
			// A decided method sent without an id still runs on a
			// lenient server, it just gets no answer: decide it too, and
			// drop it silently when denied.
			allow, rule := x.decideOne(m)
			if !allow {
				e := x.entry(m)
				e.Decision, e.Rule = audit.DecisionDenied, rule
				x.record(e)
				continue
			}
		}
		if m.kind != kindRequest {
			forward = append(forward, m.raw)
			continue
		}
		e := x.entry(m)
		if lk, ok := listKinds[m.method]; ok && x.bind != nil {
			if x.lists == nil {
				x.lists = map[string]*listKind{}
			}
			x.lists[m.idKey] = lk
		}
		if !m.decided {
			e.Decision = audit.DecisionUngoverned
			x.wait(m, e)
			forward = append(forward, m.raw)
			continue
		}
		if x.bind == nil {
			e.Decision = audit.DecisionUngoverned
			x.wait(m, e)
			forward = append(forward, m.raw)
			continue
		}
		allow, rule := x.decideOne(m)
		e.Rule = rule
		if allow {
			e.Decision = audit.DecisionAllowed
			x.wait(m, e)
			forward = append(forward, m.raw)
			continue
		}
		e.Decision = audit.DecisionDenied
		denials = append(denials, errorResponse(m.id, CodeDenied, denialMessage(m)))
		code := CodeDenied
		e.ErrorCode = &code
		x.record(e)
	}
	switch {
	case len(forward) == 0 && len(denials) == 0:
		// Only denied notifications: accepted, as a server would.
		w.WriteHeader(http.StatusAccepted)
		return
	case len(forward) == 0 && !b.batch:
		writeJSON(w, http.StatusOK, denials[0])
		return
	case len(forward) == 0:
		writeJSON(w, http.StatusOK, joinArray(denials))
		return
	}
	x.denials = denials
	fwd := forward[0]
	if b.batch {
		fwd = joinArray(forward)
	}
	r2 := x.r.Clone(x.r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(fwd))
	r2.ContentLength = int64(len(fwd))
	r2.TransferEncoding = nil
	r2.Header.Set("Content-Length", fmt.Sprint(len(fwd)))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(fwd)), nil }
	x.serveUpstream(next, w, r2)
}

// decideOne asks the policy; a request without a name, with malformed
// params or whose evaluation failed is denied. Completions are decided by
// whether the prompt or resource template would be listed (methods.go);
// they have no deciding rule to report.
func (x *exchange) decideOne(m *message) (bool, string) {
	if !m.hasName || m.badParams || m.target == "" {
		return false, ""
	}
	if m.method == methodComplete {
		return x.bind.Visible(m.target, m.name), ""
	}
	d := x.bind.Decide(&mcppolicy.Request{Method: m.target, Name: m.name, Arguments: m.args})
	if d.Err != nil {
		x.g.log.Error("MCP policy: rule failed to evaluate; request denied", requestid.LogField(x.r.Context()),
			zap.String("method", m.method), zap.String("rule", d.Rule), zap.Error(d.Err))
		return false, d.Rule
	}
	return d.Allow, d.Rule
}

func denialMessage(m *message) string {
	what := "tool"
	switch m.target {
	case mcppolicy.MethodPromptsGet:
		what = "prompt"
	case mcppolicy.MethodResourcesRead:
		what = "resource"
	}
	switch {
	case m.method == methodComplete && (m.target == "" || !m.hasName):
		return m.method + " request without a valid ref (a ref/prompt with a name or a ref/resource with a uri): not allowed by this server's policy"
	case !m.hasName:
		return fmt.Sprintf("%s request without a valid name: not allowed by this server's policy", m.method)
	case m.badParams:
		return fmt.Sprintf("%s %q: malformed arguments are not allowed by this server's policy", what, m.name)
	case m.method == methodComplete:
		return fmt.Sprintf("completion for %s %q is not allowed by this server's policy", what, m.name)
	}
	return fmt.Sprintf("%s %q is not allowed by this server's policy", what, m.name)
}

// entry starts the audit entry of a request.
func (x *exchange) entry(m *message) *audit.Entry {
	c := x.caller
	return &audit.Entry{
		Time:      x.start,
		RequestID: requestid.FromContext(x.r.Context()),
		SessionID: x.r.Header.Get("Mcp-Session-Id"),
		Subject:   c.Subject,
		Email:     c.Email,
		ClientID:  c.ClientID,
		Method:    m.method,
		Name:      m.name,
		Arguments: m.args,
	}
}

// wait keeps e until the answer to m is seen.
func (x *exchange) wait(m *message, e *audit.Entry) {
	if !x.recording {
		return
	}
	if x.pending == nil {
		x.pending = map[string]*audit.Entry{}
	}
	x.pending[m.idKey] = e
}

// record writes e once, with the time elapsed so far.
func (x *exchange) record(e *audit.Entry) {
	if !x.recording {
		return
	}
	e.Duration = x.g.now().Sub(x.start)
	x.g.rec.Record(*e)
}

// answered records the pending entry of idKey with the answer's error
// code (nil on success).
func (x *exchange) answered(key string, code *int) {
	e, ok := x.pending[key]
	if !ok {
		return
	}
	delete(x.pending, key)
	e.ErrorCode = code
	x.record(e)
}

// finish records the entries whose answer was never seen.
func (x *exchange) finish() {
	for k, e := range x.pending {
		delete(x.pending, k)
		x.record(e)
	}
}

// invalid refuses the whole body before any decision, with one audit
// entry.
func (x *exchange) invalid(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string, m *message) {
	e := &audit.Entry{
		Time: x.start, RequestID: requestid.FromContext(x.r.Context()), SessionID: x.r.Header.Get("Mcp-Session-Id"),
		Decision: audit.DecisionInvalid, ErrorCode: &code,
	}
	if x.caller != nil {
		e.Subject, e.Email, e.ClientID = x.caller.Subject, x.caller.Email, x.caller.ClientID
	}
	if m != nil {
		e.Method, e.Name = m.method, m.name
	}
	x.record(e)
	writeJSON(w, status, errorResponse(id, code, msg))
}

// callerOf describes the caller to the policy. Cookie and bearer callers
// get the same shape, so one rule decides both identically.
func callerOf(id *identity.Identity, tok *bearer.Token) *mcppolicy.Caller {
	c := &mcppolicy.Caller{
		Subject: id.Subject, Email: id.Email, EmailVerified: id.EmailVerified,
		Name: id.Name, Username: id.Username, Groups: id.Groups, Claims: id.Claims,
		Auth: "cookie",
	}
	if tok != nil || id.Method == bearer.Method {
		c.Auth = bearer.Method
	}
	if tok != nil {
		c.ClientID, c.Scopes = tok.ClientID, tok.Scopes
		if c.Claims == nil {
			c.Claims = tok.Claims
		}
	}
	return c
}

// Header names of MCP 2026-07-28.
const (
	headerMethod = "Mcp-Method"
	headerName   = "Mcp-Name"
)

// checkHeaders compares Mcp-Method and Mcp-Name, when present, with every
// request and notification of the body. It returns the first message that
// disagrees. The decision is always made on the body; a disagreeing header
// is refused because a server or gateway routing on headers would act on
// another message than the one decided.
func checkHeaders(h http.Header, b *body) (*message, error) {
	hm, hasM := h[headerMethod]
	hn, hasN := h[headerName]
	if !hasM && !hasN {
		return nil, nil
	}
	for i := range b.msgs {
		m := &b.msgs[i]
		if m.kind == kindResponse {
			continue
		}
		if hasM && (len(hm) != 1 || hm[0] != m.method) {
			return m, fmt.Errorf("header mismatch: Mcp-Method header value %q does not match body value %q", strings.Join(hm, ","), m.method)
		}
		if hasN && governed(m.method) && (len(hn) != 1 || !m.hasName || !nameMatches(hn[0], m.name)) {
			return m, fmt.Errorf("header mismatch: Mcp-Name header value %q does not match body value %q", strings.Join(hn, ","), m.name)
		}
	}
	return nil, nil
}

// nameMatches compares an Mcp-Name header with the body's name. The Go
// SDK sends the name as is; SEP-2243 clients Base64-encode values that are
// not plain printable ASCII as =?base64?...?=, so the decoded form is
// accepted too.
func nameMatches(header, name string) bool {
	if header == name {
		return true
	}
	if enc, ok := strings.CutPrefix(header, "=?base64?"); ok {
		if enc, ok = strings.CutSuffix(enc, "?="); ok {
			dec, err := base64.StdEncoding.DecodeString(enc)
			return err == nil && string(dec) == name
		}
	}
	return false
}

// errorResponse encodes a JSON-RPC error response; id nil means null.
func errorResponse(id json.RawMessage, code int, msg string) []byte {
	if id == nil {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
	return b
}

func joinArray(parts [][]byte) []byte {
	out := make([]byte, 0, 2+len(parts)*64)
	out = append(out, '[')
	for i, p := range parts {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, p...)
	}
	return append(out, ']')
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
