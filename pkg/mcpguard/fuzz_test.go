package mcpguard_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpguard"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
)

// hidingPolicy shows every item except those whose name starts with
// "hidden"; it allows no call (only lists matter here).
type hidingPolicy struct{}

func (hidingPolicy) Bind(*mcppolicy.Caller) mcpguard.Binding { return hidingPolicy{} }
func (hidingPolicy) Decide(*mcppolicy.Request) mcppolicy.Decision {
	return mcppolicy.Decision{Rule: mcppolicy.DefaultRule}
}
func (hidingPolicy) Visible(_, name string) bool { return !strings.HasPrefix(name, "hidden") }

// fuzzMaxList is small, so that oversized events and bodies are reached.
const fuzzMaxList = 512

// listRequest is the list request the fuzzed answers answer (id 1).
const listRequest = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`

// serveChunks sends listRequest through a guard hiding "hidden*" names to a
// server answering with body in the chunks cuts gives (each byte one chunk
// length), flushing after each. check, when set, runs after every chunk
// with the input written so far and the client's output so far.
func serveChunks(contentType string, body, cuts []byte, check func(in, out []byte)) *httptest.ResponseRecorder {
	g := mcpguard.New(mcpguard.Options{})
	g.Set(mcpguard.Settings{Policy: hidingPolicy{}, MaxListBytes: fuzzMaxList})
	w := httptest.NewRecorder()
	next := http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", contentType)
		rest, n := body, 0
		for i := 0; len(rest) > 0; i++ {
			size := len(rest)
			if i < len(cuts) {
				size = min(int(cuts[i])+1, len(rest))
			}
			_, _ = rw.Write(rest[:size])
			rw.(http.Flusher).Flush()
			rest, n = rest[size:], n+size
			if check != nil {
				check(body[:n], w.Body.Bytes())
			}
		}
	})
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(listRequest))
	r.Header.Set("Content-Type", "application/json")
	r = r.WithContext(identity.NewContext(r.Context(), &identity.Identity{Subject: "bob"}))
	g.Wrap(next).ServeHTTP(w, r)
	return w
}

// listLeak reads a JSON-RPC body (one message or a batch) the way
// clients do and returns the hidden item names of the first answer to id 1
// it finds, if that answer is a result; answered reports whether one was
// found. Besides the official SDK's reading (exact member names, the last
// of duplicate keys), it reads each message as a lenient client would:
// member names matched ignoring case (Go's encoding/json), and a string id
// matched to a numeric one by JavaScript's Number() (the TypeScript SDK).
func listLeak(data []byte) (leaked []string, answered bool) {
	leaked, answered = strictLeak(data)
	t := bytes.TrimSpace(data)
	var msgs []json.RawMessage
	if len(t) > 0 && t[0] == '[' {
		if json.Unmarshal(t, &msgs) != nil {
			return leaked, answered
		}
	} else {
		msgs = []json.RawMessage{t}
	}
	for _, raw := range msgs {
		var m struct {
			ID     json.RawMessage
			Method json.RawMessage
			Error  json.RawMessage
			Result struct {
				Tools []struct{ Name string }
			}
		}
		if json.Unmarshal(raw, &m) != nil || m.Method != nil || !isOne(m.ID) {
			continue
		}
		if m.Error == nil || string(m.Error) == "null" {
			for _, it := range m.Result.Tools {
				if strings.HasPrefix(it.Name, "hidden") {
					leaked = append(leaked, it.Name)
				}
			}
		}
		answered = true
		break
	}
	return leaked, answered
}

// isOne reports whether a client could read id as 1: the number, or a
// string JavaScript's Number() makes 1 of.
func isOne(id json.RawMessage) bool {
	var f float64
	if json.Unmarshal(id, &f) == nil {
		return f == 1
	}
	var s string
	if json.Unmarshal(id, &s) != nil {
		return false
	}
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 0, 64); err == nil && len(s) > 2 && s[0] == '0' {
		return n == 1
	}
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && f == 1
}

// strictLeak is listLeak with the official SDK's reading only.
func strictLeak(data []byte) (leaked []string, answered bool) {
	t := bytes.TrimSpace(data)
	var msgs []json.RawMessage
	if len(t) > 0 && t[0] == '[' {
		if json.Unmarshal(t, &msgs) != nil {
			return nil, false
		}
	} else {
		msgs = []json.RawMessage{t}
	}
	for _, raw := range msgs {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil || m == nil {
			continue
		}
		if _, ok := m["method"]; ok {
			continue
		}
		var id float64
		if json.Unmarshal(m["id"], &id) != nil || id != 1 {
			continue
		}
		if e, ok := m["error"]; ok && string(e) != "null" {
			return nil, true
		}
		var res struct {
			Tools []map[string]json.RawMessage `json:"tools"`
		}
		_ = json.Unmarshal(m["result"], &res)
		for _, it := range res.Tools {
			var name string
			if json.Unmarshal(it["name"], &name) == nil && strings.HasPrefix(name, "hidden") {
				leaked = append(leaked, name)
			}
		}
		return leaked, true
	}
	return nil, false
}

// sseEvents splits a stream the way an EventSource client does (WHATWG
// HTML, server-sent events): a leading BOM is dropped, lines end with CR,
// LF or CRLF, a blank line dispatches the event, and the data lines are
// joined with LF. An event cut off by the end of the stream is dispatched
// too (stricter than the standard, which drops it).
func sseEvents(stream []byte) [][]byte {
	stream = bytes.TrimPrefix(stream, []byte("\ufeff"))
	var events [][]byte
	var data []byte
	has := false
	dispatch := func() {
		if has {
			events = append(events, data)
		}
		data, has = nil, false
	}
	for len(stream) > 0 {
		i := bytes.IndexAny(stream, "\r\n")
		line := stream
		if i >= 0 {
			line = stream[:i]
			if stream[i] == '\r' && i+1 < len(stream) && stream[i+1] == '\n' {
				i++
			}
			stream = stream[i+1:]
		} else {
			stream = nil
		}
		if len(line) == 0 {
			dispatch()
			continue
		}
		field, value, colon := bytes.Cut(line, []byte{':'})
		if colon {
			value = bytes.TrimPrefix(value, []byte{' '})
		}
		if string(field) != "data" {
			continue
		}
		if has {
			data = append(data, '\n')
		}
		data, has = append(data, value...), true
	}
	dispatch()
	return events
}

// filterEvents splits a stream the way the guard's filter does: lines end
// with LF, an event ends with its blank line; the rest is an incomplete
// event. ok is false when the stream uses lines the filter does not read
// as a client would (a CR not followed by LF, a BOM) or an event longer
// than fuzzMaxList: only well-formed streams promise byte-for-byte events.
func filterEvents(stream []byte) (events [][]byte, rest []byte, ok bool) {
	ok = !bytes.HasPrefix(stream, []byte("\ufeff"))
	start := 0
	for i := 0; i < len(stream); i++ {
		c := stream[i]
		if c == '\r' && (i+1 >= len(stream) || stream[i+1] != '\n') {
			ok = false
		}
		if c != '\n' {
			continue
		}
		lineStart := bytes.LastIndexByte(stream[:i], '\n') + 1
		if lineStart < start {
			lineStart = start
		}
		if line := stream[lineStart:i]; len(line) == 0 || string(line) == "\r" {
			if i+1-start > fuzzMaxList {
				ok = false
			}
			events, start = append(events, stream[start:i+1]), i+1
		}
	}
	if len(stream)-start > fuzzMaxList {
		ok = false
	}
	return events, stream[start:], ok
}

// answersList reports whether an SSE event's data holds an answer to id 1.
func answersList(ev []byte) bool {
	for _, d := range sseEvents(ev) {
		if _, answered := listLeak(d); answered {
			return true
		}
	}
	return false
}

// FuzzSSEFilter feeds arbitrary upstream event streams, cut into
// arbitrary writes, through the SSE list filter with a tools/list pending
// and a policy hiding "hidden*" tools. Properties: no hidden tool of the
// answer to the list request reaches a client reading the stream as the
// standard says (BOM, CR, LF, CRLF); a well-formed stream comes out event
// by event in order, every event that does not answer the list request
// byte for byte, each one as soon as its blank line was written.
func FuzzSSEFilter(f *testing.F) {
	list := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"hidden_admin"}]}}`
	for _, s := range []string{
		"event: message\ndata: " + list + "\n\n",
		": ping\n\nevent: message\nid: 3\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: " + list + "\n\ndata: after\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":1,\r\ndata: \"result\":{\"tools\":[{\"name\":\"hidden_x\"}]}}\r\n\r\n",
		"data: [" + list + "]\n\n",
		"data: " + list,
		"data: " + list + "\r\rdata: x\r\r",
		"data: " + list + "\r\rdata: x\n\n",
		"\ufeffdata: " + list + "\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"hidden_other\"}]}}\n\ndata: " + list + "\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"m\"}}\n\ndata: " + list + "\n\n",
		"data: " + strings.Replace(list, "echo", strings.Repeat("e", 600), 1) + "\n\n",
		"data:" + list + "\n\n",
		"data\n\n",
		"\n\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"ID\":1,\"result\":{\"tools\":[{\"name\":\"hidden_x\"}]}}\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":\" 1.0\",\"result\":{\"tools\":[{\"name\":\"hidden_x\"}]}}\n\n",
	} {
		f.Add([]byte(s), []byte{3, 0, 40, 7})
		f.Add([]byte(s), []byte{})
	}
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		inEvents, _, wellFormed := filterEvents(stream)
		// Events flushed so far: every complete event written must have
		// reached the client (nothing held back once its blank line
		// arrived).
		check := func(in, out []byte) {
			if !wellFormed {
				return
			}
			ie, _, _ := filterEvents(in)
			oe, _, _ := filterEvents(out)
			if len(oe) < len(ie) {
				t.Fatalf("after writing %q the client has %d of %d complete events: %q", in, len(oe), len(ie), out)
			}
		}
		w := serveChunks("text/event-stream", stream, cuts, check)
		out := w.Body.Bytes()
		// A client never sees a hidden tool in the first answer to id 1.
		for _, data := range sseEvents(out) {
			leaked, answered := listLeak(data)
			if len(leaked) > 0 {
				t.Fatalf("hidden tools %q reached the client: stream %q, output %q", leaked, stream, out)
			}
			if answered {
				break
			}
		}
		if !wellFormed {
			return
		}
		outEvents, outRest, _ := filterEvents(out)
		_, inRest, _ := filterEvents(stream)
		if len(outEvents) < len(inEvents) {
			t.Fatalf("%d events in, %d out: stream %q, output %q", len(inEvents), len(outEvents), stream, out)
		}
		listSeen := false
		for i, ev := range inEvents {
			if !listSeen && answersList(ev) {
				listSeen = true
				continue // the answer: rewritten
			}
			if !bytes.Equal(outEvents[i], ev) {
				t.Fatalf("event %d changed: %q became %q (stream %q)", i, ev, outEvents[i], stream)
			}
		}
		rest := append(bytes.Join(outEvents[len(inEvents):], nil), outRest...)
		if len(bytes.TrimSpace(inRest)) == 0 {
			if len(outEvents) != len(inEvents) {
				t.Fatalf("%d events in, %d out: stream %q, output %q", len(inEvents), len(outEvents), stream, out)
			}
			return
		}
		// The event the stream ended in comes out as it came, rewritten
		// if it answered the list, or, when it is not JSON and the list
		// is still unanswered, replaced by the list's error.
		listError := answersList(rest) && bytes.Contains(rest, []byte("-32603"))
		if !bytes.Equal(rest, inRest) && (listSeen || !(answersList(inRest) || listError)) {
			t.Fatalf("the cut-off event %q became %q (stream %q)", inRest, rest, stream)
		}
	})
}

// FuzzJSONListFilter feeds arbitrary JSON-RPC answers to a pending
// tools/list (id 1) through the JSON list filter. Properties: no hidden
// tool of the answer to id 1 reaches the client; the output is valid JSON
// when the input was; the answer keeps id 1 (a result, or the guard's
// error when it could not filter).
func FuzzJSONListFilter(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"hidden_admin","description":"<b>"}]}}`,
		`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"hidden_a"}]}},{"jsonrpc":"2.0","method":"notifications/x"}]`,
		`{"jsonrpc":"2.0","id":1.0,"result":{"tools":[{"name":"hidden_a"}],"nextCursor":"c"}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":null}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":1},{"name":"hidden_a","name":"echo"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}]},"result":{"tools":[{"name":"hidden_b"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"hidden_a"}}}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"hidden_a"}}`,
		`{"jsonrpc":"2.0","id":1,"result":[]}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"` + strings.Repeat("x", 600) + `"}]}}`,
		` {"jsonrpc":"2.0","id":1,"result":{}} `,
		`{"jsonrpc":"2.0","Id":1,"result":{"tools":[{"name":"hidden_a"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"Result":{"tools":[{"name":"hidden_a"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[],"Tools":[{"name":"hidden_a"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","Name":"hidden_a"}]}}`,
		`{"jsonrpc":"2.0","id":"1","result":{"tools":[{"name":"hidden_a"}]}}`,
		`{"jsonrpc":"2.0","id":"0x1","result":{"tools":[{"name":"hidden_a"}]}}`,
		`not json`, `[]`, `{}`, `null`,
	} {
		f.Add([]byte(s), []byte{5, 200})
		f.Add([]byte(s), []byte{})
	}
	f.Fuzz(func(t *testing.T, body, cuts []byte) {
		w := serveChunks("application/json", body, cuts, nil)
		out := w.Body.Bytes()
		if leaked, _ := listLeak(out); len(leaked) > 0 {
			t.Fatalf("hidden tools %q reached the client: body %q, output %q", leaked, body, out)
		}
		if !json.Valid(body) {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("valid JSON %q came out invalid: %q", body, out)
		}
		if _, answered := listLeak(body); answered {
			if _, ok := listLeak(out); !ok {
				t.Fatalf("the answer to id 1 was lost: body %q, output %q", body, out)
			}
		}
	})
}
