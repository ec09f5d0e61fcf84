package mcpguard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// serveUpstream forwards r2 and, when something is needed from the
// response (audit outcomes, list filtering, merging the proxy's denials of
// a batch), watches it through a responseWriter.
func (x *exchange) serveUpstream(next http.Handler, w http.ResponseWriter, r2 *http.Request) {
	if len(x.pending) == 0 && len(x.lists) == 0 && len(x.denials) == 0 {
		next.ServeHTTP(w, r2)
		return
	}
	// The response must be read: ask for plain bytes.
	r2.Header.Del("Accept-Encoding")
	rw := &responseWriter{ResponseWriter: w, x: x}
	defer x.finish()
	next.ServeHTTP(rw, r2)
	rw.finish()
}

// Response modes.
const (
	modePass     = iota // not inspected (not JSON-RPC, or nothing wanted)
	modeJSONHold        // application/json with lists to filter: buffered whole
	modeJSONTee         // application/json: written through, a copy parsed at the end
	modeSSE             // text/event-stream: parsed event by event
	modeDiscard         // replaced: the upstream's body is dropped
)

// responseWriter inspects the upstream's response. It keeps http.Flusher
// (SSE and httputil.ReverseProxy assert it) and Unwrap, as the other
// wrappers of the MCP route do.
type responseWriter struct {
	http.ResponseWriter
	x           *exchange
	wroteHeader bool
	status      int
	mode        int
	// buf is the held (modeJSONHold) or copied (modeJSONTee) body;
	// overflow is set once it passed max_list_bytes.
	buf      []byte
	overflow bool
	// merge: denials are appended to a JSON array answer; prefixed says
	// a single-object answer was turned into an array; tail holds the
	// trailing ']' and whitespace until the end.
	merge    bool
	started  bool
	prefixed bool
	nonSpace int // non-space bytes written before tail
	tail     []byte
	sse      sseFilter
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *responseWriter) Flush() {
	if w.mode == modeJSONHold || w.mode == modeDiscard || !w.wroteHeader {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 100 && code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteHeader, w.status = true, code
	x, h := w.x, w.Header()
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	ce := h.Get("Content-Encoding")
	switch {
	case len(x.denials) > 0 && (code == http.StatusAccepted || code == http.StatusNoContent):
		// Only notifications were forwarded; the denied requests still
		// need their answers.
		w.mode = modeDiscard
		h.Del("Content-Length")
		writeJSON(w.ResponseWriter, http.StatusOK, joinArray(x.denials))
		x.denials = nil
	case ce != "" && !strings.EqualFold(ce, "identity") && (len(x.lists) > 0 || len(x.denials) > 0):
		// Compressed although we asked for plain bytes: a list cannot be
		// filtered, so it is not shown.
		x.g.log.Error("MCP policy: upstream compressed a response the policy must read; replaced by an error",
			requestid.LogField(x.r.Context()), zap.String("content_encoding", ce))
		w.mode = modeDiscard
		h.Del("Content-Encoding")
		w.replaceLists("could not be filtered (the MCP server compressed it)")
	case ce != "" && !strings.EqualFold(ce, "identity"):
		w.mode = modePass
		w.ResponseWriter.WriteHeader(code)
	case ct == "application/json" && len(x.lists) > 0:
		w.mode = modeJSONHold
	case ct == "application/json":
		w.mode, w.merge = modeJSONTee, len(x.denials) > 0
		if w.merge {
			h.Del("Content-Length")
		}
		w.ResponseWriter.WriteHeader(code)
	case ct == "text/event-stream":
		w.mode = modeSSE
		h.Del("Content-Length")
		w.ResponseWriter.WriteHeader(code)
		w.sse = sseFilter{w: w}
		for _, d := range x.denials {
			w.sse.out(sseMessage(d))
		}
		x.denials = nil
		w.sse.flush()
	case len(x.lists) > 0 && code >= 200 && code < 300 && code != http.StatusNoContent:
		// A success in a type clients do not read as JSON-RPC, which
		// the filter cannot read either: its bytes may still hold the
		// list, so it is not shown.
		x.g.log.Error("MCP policy: upstream answered a list request with a content type the policy cannot filter; replaced by an error",
			requestid.LogField(x.r.Context()), zap.String("content_type", ct))
		w.mode = modeDiscard
		w.replaceLists("could not be filtered (the MCP server answered with Content-Type " + strconv.Quote(ct) + ")")
	default:
		w.mode = modePass
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	switch w.mode {
	case modeDiscard:
		return len(p), nil
	case modeJSONHold:
		w.capture(p)
		return len(p), nil
	case modeJSONTee:
		w.capture(p)
		if w.merge {
			return len(p), w.writeMerging(p)
		}
	case modeSSE:
		return len(p), w.sse.write(p)
	}
	return w.ResponseWriter.Write(p)
}

// capture keeps a copy of the body up to max_list_bytes.
func (w *responseWriter) capture(p []byte) {
	if w.overflow {
		return
	}
	if len(w.buf)+len(p) > w.x.s.MaxListBytes {
		w.overflow, w.buf = true, nil
		return
	}
	w.buf = append(w.buf, p...)
}

// writeMerging writes a JSON array answer through, holding back its final
// ']' so the proxy's denials can be appended before it.
func (w *responseWriter) writeMerging(p []byte) error {
	if !w.started {
		i := bytes.IndexFunc(p, func(r rune) bool { return !isSpace(r) })
		if i < 0 {
			_, err := w.ResponseWriter.Write(p)
			return err
		}
		w.started = true
		if p[i] != '[' {
			// A single response to a batch: make it an array.
			w.prefixed = true
			if _, err := w.ResponseWriter.Write([]byte{'['}); err != nil {
				return err
			}
		}
	}
	data := append(w.tail, p...)
	k := bytes.LastIndexFunc(data, func(r rune) bool { return !isSpace(r) })
	if k < 0 {
		w.tail = data
		return nil
	}
	w.tail = append([]byte(nil), data[k:]...)
	for _, c := range data[:k] {
		if !isSpace(rune(c)) {
			w.nonSpace++
		}
	}
	_, err := w.ResponseWriter.Write(data[:k])
	return err
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }

// finish completes the response once the upstream handler returned.
func (w *responseWriter) finish() {
	x := w.x
	if !w.wroteHeader {
		if len(x.denials) > 0 {
			writeJSON(w.ResponseWriter, http.StatusOK, joinArray(x.denials))
		}
		return
	}
	switch w.mode {
	case modeJSONHold:
		if w.overflow {
			x.g.log.Warn("MCP policy: list response larger than policy.max_list_bytes; replaced by an error",
				requestid.LogField(x.r.Context()), zap.Int("max_list_bytes", x.s.MaxListBytes))
			w.replaceLists(fmt.Sprintf("is larger than %d bytes (policy.max_list_bytes) and cannot be filtered", x.s.MaxListBytes))
			return
		}
		out, err := w.rewriteBody(w.buf)
		if err != nil {
			w.replaceLists("could not be filtered (" + err.Error() + ")")
			return
		}
		h := w.Header()
		h.Set("Content-Length", strconv.Itoa(len(out)))
		w.ResponseWriter.WriteHeader(w.status)
		_, _ = w.ResponseWriter.Write(out)
	case modeJSONTee:
		if w.merge {
			w.endMerge()
		}
		if !w.overflow {
			w.observe(w.buf)
		}
	case modeSSE:
		w.sse.end()
	}
}

// endMerge closes the merged array with the proxy's denials.
func (w *responseWriter) endMerge() {
	x := w.x
	tail := bytes.TrimRight(w.tail, " \t\r\n")
	var out []byte
	switch {
	case w.prefixed:
		out = append(append(append(out, tail...), ','), joinArray(x.denials)[1:]...)
	case len(tail) == 1 && tail[0] == ']' && w.nonSpace == 1:
		// "[]": nothing to separate from.
		out = joinArray(x.denials)[1:]
	case len(tail) == 1 && tail[0] == ']':
		out = append(append(out, ','), joinArray(x.denials)[1:]...)
	default:
		x.g.log.Error("MCP policy: could not merge denials into the upstream's batch answer", requestid.LogField(x.r.Context()))
		out = tail
	}
	x.denials = nil
	_, _ = w.ResponseWriter.Write(out)
}

// observe records the outcomes found in a JSON body (no rewriting).
func (w *responseWriter) observe(b []byte) {
	forEachResponse(b, func(raw []byte) []byte {
		w.x.seen(raw)
		return nil
	})
}

// rewriteBody filters the list responses of a held JSON body and appends
// the proxy's denials.
func (w *responseWriter) rewriteBody(b []byte) ([]byte, error) {
	x := w.x
	out, batch, err := forEachResponse(b, x.seen)
	if err != nil {
		return nil, err
	}
	if len(x.denials) > 0 {
		out = bytes.TrimSpace(out)
		switch {
		case !batch:
			out = joinArray(append([][]byte{out}, x.denials...))
		case bytes.Equal(out, []byte("[]")):
			out = joinArray(x.denials)
		default:
			out = append(append(out[:len(out)-1:len(out)-1], ','), joinArray(x.denials)[1:]...)
		}
		x.denials = nil
	}
	return out, nil
}

// replaceLists answers the pending list requests (and the proxy's
// denials) with errors, in place of an upstream answer that cannot be
// shown. The upstream's body is dropped.
func (w *responseWriter) replaceLists(why string) {
	x := w.x
	var parts [][]byte
	for key, lk := range x.lists {
		code := CodeListUnfiltered
		parts = append(parts, errorResponse(rawID(key), code, lk.method+" response "+why))
		x.answered(key, &code)
	}
	x.lists = nil
	parts = append(parts, x.denials...)
	x.denials = nil
	h := w.Header()
	h.Del("Content-Length")
	if len(parts) == 1 {
		writeJSON(w.ResponseWriter, http.StatusOK, parts[0])
		return
	}
	writeJSON(w.ResponseWriter, http.StatusOK, joinArray(parts))
}

// rawID turns an idKey back into a JSON id.
func rawID(key string) json.RawMessage {
	switch key[0] {
	case 's':
		b, _ := json.Marshal(key[1:])
		return b
	case 'n':
		return json.RawMessage(key[1:])
	}
	return json.RawMessage("null")
}

// forEachResponse calls f for every message of a JSON-RPC body (one
// message or an array); f returns a replacement or nil. The body is
// re-encoded only when something was replaced.
func forEachResponse(b []byte, f func([]byte) []byte) (out []byte, batch bool, err error) {
	t := bytes.TrimSpace(b)
	if len(t) > 0 && t[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(t, &elems); err != nil {
			return nil, true, fmt.Errorf("invalid JSON: %w", err)
		}
		changed := false
		parts := make([][]byte, len(elems))
		for i, e := range elems {
			parts[i] = e
			if r := f(e); r != nil {
				parts[i], changed = r, true
			}
		}
		if !changed {
			return b, true, nil
		}
		return joinArray(parts), true, nil
	}
	if !json.Valid(t) {
		return nil, false, fmt.Errorf("invalid JSON")
	}
	if r := f(t); r != nil {
		return r, false, nil
	}
	return b, false, nil
}

// seen handles one message of the upstream's answer: it records the
// audit outcome of its id and, for a list request's response, returns the
// filtered response (nil: unchanged).
func (x *exchange) seen(raw []byte) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	if _, ok := m["method"]; ok {
		return nil // a server request or notification
	}
	if key, ok := x.ambiguousList(m); ok {
		// A lenient client could take m for the list's answer although
		// the filter does not read it so: it is not shown.
		lk := x.lists[key]
		delete(x.lists, key)
		code := CodeListUnfiltered
		x.answered(key, &code)
		return errorResponse(rawID(key), code, lk.method+" response could not be filtered (its member names or id are ambiguous)")
	}
	id, ok := m["id"]
	if !ok {
		return nil
	}
	key, err := idKey(id)
	if err != nil {
		return nil
	}
	var code *int
	if e, ok := m["error"]; ok && !isNull(e) {
		var eo struct {
			Code int `json:"code"`
		}
		_ = json.Unmarshal(e, &eo)
		code = &eo.Code
	}
	var out []byte
	if lk, ok := x.lists[key]; ok {
		delete(x.lists, key)
		if res, ok := m["result"]; ok && code == nil {
			filtered, err := x.filterResult(res, lk)
			if err == nil {
				m["result"] = filtered
				out, err = marshalObject(m)
			}
			if err != nil {
				c := CodeListUnfiltered
				code = &c
				out = errorResponse(id, c, lk.method+" response could not be filtered ("+err.Error()+")")
			}
		}
	}
	x.answered(key, code)
	return out
}

// ambiguousList finds a pending list request a lenient client could take
// the response m for the answer to, although the filter would not: m has
// a member spelt with another case ("Result", "ID"), which clients
// decoding with Go's encoding/json read as that member, or a string id
// that JavaScript's Number() turns into the list request's numeric id (the
// TypeScript SDK matches responses that way).
func (x *exchange) ambiguousList(m map[string]json.RawMessage) (string, bool) {
	if len(x.lists) == 0 {
		return "", false
	}
	caseVariant := nearMiss(m, topKeys) != nil
	for k, v := range m {
		if foldKey(k) != "ID" {
			continue
		}
		exact, err := idKey(v)
		if err == nil && caseVariant {
			if _, ok := x.lists[exact]; ok {
				return exact, true
			}
		}
		if err == nil && k == "id" && x.sent(exact) {
			continue // the answer to a request under its own id
		}
		if n, ok := jsNumberKey(v); ok {
			if _, ok := x.lists[n]; ok {
				return n, true
			}
		}
	}
	return "", false
}

// sent reports whether a request with the idKey key was in the body.
func (x *exchange) sent(key string) bool {
	for i := range x.msgs {
		if x.msgs[i].kind == kindRequest && x.msgs[i].idKey == key {
			return true
		}
	}
	return false
}

// jsNumberKey is the idKey of the number JavaScript's Number() makes of a
// string id (leading and trailing white space ignored, "" is 0, 0x, 0o
// and 0b prefixes); it errs towards reading a number.
func jsNumberKey(raw json.RawMessage) (string, bool) {
	var s string
	if !isString(raw) || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "n0", true
	}
	if len(s) > 2 && s[0] == '0' && strings.ContainsRune("xXoObB", rune(s[1])) {
		if n, err := strconv.ParseInt(s, 0, 64); err == nil {
			return "n" + strconv.FormatInt(n, 10), true
		}
		return "", false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return "", false
	}
	key, err := idKey(json.RawMessage(strconv.FormatFloat(f, 'g', -1, 64)))
	return key, err == nil
}

// filterResult drops the items the caller may not use from a list result
// and marks it private: what a caller sees depends on who they are, so it
// must not be cached for others (an absent cacheScope means public).
func (x *exchange) filterResult(res json.RawMessage, lk *listKind) (json.RawMessage, error) {
	var r map[string]json.RawMessage
	if err := json.Unmarshal(res, &r); err != nil || r == nil {
		return nil, fmt.Errorf("result is not an object")
	}
	itemsKey, nameKey := lk.items, lk.name
	if nearMiss(r, []string{itemsKey}) != nil {
		return nil, fmt.Errorf("%s is also spelt with another case", itemsKey)
	}
	if items, ok := r[itemsKey]; ok && !isNull(items) {
		var list []json.RawMessage
		if err := json.Unmarshal(items, &list); err != nil {
			return nil, fmt.Errorf("%s is not an array", itemsKey)
		}
		kept := make([][]byte, 0, len(list))
		for _, it := range list {
			var o map[string]json.RawMessage
			var name string
			if json.Unmarshal(it, &o) != nil || json.Unmarshal(o[nameKey], &name) != nil {
				continue // unnamed: nothing a rule could allow
			}
			if nearMiss(o, []string{nameKey}) != nil {
				continue // another name spelt "Name": which one a client shows is unknown
			}
			if x.bind.Visible(lk.decided, name) {
				kept = append(kept, it)
			}
		}
		r[itemsKey] = joinArray(kept)
	}
	r["cacheScope"] = json.RawMessage(`"private"`)
	return marshalObject(r)
}

// marshalObject encodes a decoded object without HTML-escaping its raw
// values, so text in descriptions keeps its bytes.
func marshalObject(m map[string]json.RawMessage) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
