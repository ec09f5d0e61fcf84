package attacks

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// The tool policy (issue 10) under attack: replica P denies the countdown
// tool and allows everything else. Every row sends a request meant to get
// a countdown call past the policy, as the demo user's cookie session, and
// asserts the answer and that no countdown call reached the MCP server.

const (
	// policyRules are replica P's policy.rules.
	policyRules = `[{name: no-countdown, effect: deny, when: 'name == "countdown"'}, {name: rest, effect: allow, when: 'true'}]`
	// policyMaxBody is replica P's policy.max_body_bytes.
	policyMaxBody = 4096
	// JSON-RPC codes of the guard's answers (pkg/mcpguard).
	codeDenied, codeMismatch, codeInvalid, codeParse = -32602, -32020, -32600, -32700
	// protocol2026 is the stateless MCP revision with Mcp-Method and
	// Mcp-Name headers.
	protocol2026 = "2026-07-28"
)

// toolCall is a tools/call of name with the raw JSON id (countdown counts
// from 1, other tools take no arguments).
func toolCall(id, name string) string {
	args := `{}`
	if name == "countdown" {
		args = `{"from":1}`
	}
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args + `}}`
}

// countdown is the denied call every row tries to smuggle.
var countdown = toolCall("1", "countdown")

// rawHTTP sends one HTTP/1.1 request to replica p written byte for byte:
// the request line with target exactly as given, Host and Connection:
// close, then headers and body as they are (no framing is added).
func (f *fixture) rawHTTP(t *testing.T, method, target, body string, headers ...string) response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(f.p.URL, "http://"), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitFor))
	var msg strings.Builder
	fmt.Fprintf(&msg, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, f.host)
	for _, h := range headers {
		msg.WriteString(h + "\r\n")
	}
	msg.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, msg.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %q: %v", method, target, err)
	}
	return readResponse(t, resp)
}

// rpcRaw sends body to target on replica P as an MCP client would, with
// the demo user's session cookie: JSON content type, the Streamable HTTP
// Accept header and a Content-Length, unless headers frame the body
// themselves (Transfer-Encoding, Content-Length) or set a Content-Type.
func (f *fixture) rpcRaw(t *testing.T, method, target, body string, headers ...string) response {
	t.Helper()
	framed, typed := false, false
	for _, h := range headers {
		name, _, _ := strings.Cut(strings.ToLower(h), ":")
		framed = framed || name == "transfer-encoding" || name == "content-length"
		typed = typed || name == "content-type"
	}
	all := []string{"Accept: application/json, text/event-stream", "Cookie: " + cookieName + "=" + f.cookie.Value}
	if !typed {
		all = append(all, "Content-Type: application/json")
	}
	if !framed {
		all = append(all, "Content-Length: "+strconv.Itoa(len(body)))
	}
	return f.rawHTTP(t, method, target, body, append(all, headers...)...)
}

// post posts body to /mcp on replica P.
func post(body string, headers ...string) func(*testing.T, *fixture) response {
	return func(t *testing.T, f *fixture) response { return f.rpcRaw(t, http.MethodPost, "/mcp", body, headers...) }
}

// sendAs sends body to /mcp on replica P with another method than POST.
func sendAs(method, body string, headers ...string) func(*testing.T, *fixture) response {
	return func(t *testing.T, f *fixture) response { return f.rpcRaw(t, method, "/mcp", body, headers...) }
}

// postTo posts the countdown call to target on replica P.
func postTo(target string) func(*testing.T, *fixture) response {
	return func(t *testing.T, f *fixture) response { return f.rpcRaw(t, http.MethodPost, target, countdown) }
}

// inSession posts body to /mcp on replica P within the demo user's MCP
// session (so that the MCP server runs what reaches it).
func inSession(body string, headers ...string) func(*testing.T, *fixture) response {
	return func(t *testing.T, f *fixture) response {
		return f.rpcRaw(t, http.MethodPost, "/mcp", body, append(headers, "Mcp-Session-Id: "+f.session(t))...)
	}
}

// session returns the demo user's MCP session through replica P, opening
// it (initialize, notifications/initialized) on first use; newFixture
// opens it, so no row's upstream log holds its initialization.
func (f *fixture) session(t *testing.T) string {
	t.Helper()
	if f.mcpSession == "" {
		f.mcpSession = f.newSession(t)
	}
	return f.mcpSession
}

// newSession opens an MCP session of the demo user through replica P.
func (f *fixture) newSession(t *testing.T) string {
	t.Helper()
	r := f.rpcRaw(t, http.MethodPost, "/mcp", initializeBody)
	id := r.Header.Get("Mcp-Session-Id")
	if r.Status != http.StatusOK || id == "" {
		t.Fatalf("initialize through replica P: %s (session %q)", r, id)
	}
	if r := f.rpcRaw(t, http.MethodPost, "/mcp", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, "Mcp-Session-Id: "+id); r.Status != http.StatusAccepted {
		t.Fatalf("notifications/initialized through replica P: %s", r)
	}
	return id
}

// rpcMsg is one JSON-RPC answer.
type rpcMsg struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// rpcMessages decodes the JSON-RPC answers of a response: a JSON object or
// array, or the data of every event of an SSE stream.
func rpcMessages(t *testing.T, r response) []rpcMsg {
	t.Helper()
	var values [][]byte
	if strings.HasPrefix(r.Header.Get("Content-Type"), "text/event-stream") {
		for line := range strings.SplitSeq(string(r.Body), "\n") {
			if data, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "data:"); ok && strings.TrimSpace(data) != "" {
				values = append(values, []byte(data))
			}
		}
	} else {
		values = [][]byte{r.Body}
	}
	var out []rpcMsg
	for _, v := range values {
		v = bytes.TrimSpace(v)
		if len(v) > 0 && v[0] == '[' {
			var batch []rpcMsg
			if err := json.Unmarshal(v, &batch); err != nil {
				t.Fatalf("answer is not a JSON-RPC batch: %v (%s)", err, r)
			}
			out = append(out, batch...)
			continue
		}
		var m rpcMsg
		if err := json.Unmarshal(v, &m); err != nil {
			t.Fatalf("answer is not JSON-RPC: %v (%s)", err, r)
		}
		out = append(out, m)
	}
	return out
}

// answers: the response has status and exactly one answer for each id of
// codes (the raw JSON id: `1`, `"1"`, `null`), an error with that code or,
// for code 0, a result. Nothing may reach the MCP server unless the case
// says so with upstream.
func answers(status int, codes map[string]int) want {
	return want{status: status, check: func(t *testing.T, _ *fixture, r response, _ []seen) {
		got := map[string]int{}
		for _, m := range rpcMessages(t, r) {
			id := string(m.ID)
			if id == "" {
				id = "null"
			}
			if _, dup := got[id]; dup {
				t.Errorf("two answers for id %s: %s", id, r)
			}
			switch {
			case m.Error != nil:
				got[id] = m.Error.Code
			case m.Result != nil:
				got[id] = 0
			default:
				t.Errorf("answer for id %s has neither result nor error: %s", id, r)
			}
		}
		if len(got) != len(codes) {
			t.Errorf("answers %v, want %v (%s)", got, codes, r)
		}
		for id, code := range codes {
			if c, ok := got[id]; !ok || c != code {
				t.Errorf("answer for id %s = %d (present %v), want %d (%s)", id, c, ok, code, r)
			}
		}
	}}
}

// denied is the policy's answer to the countdown call with id: HTTP 200,
// JSON-RPC -32602.
func denied(id string) want { return answers(http.StatusOK, map[string]int{id: codeDenied}) }

// refused is the guard's refusal of a whole body before any decision.
func refused(status, code int) want { return answers(status, map[string]int{"null": code}) }

// mismatch is the answer to Mcp-Method/Mcp-Name headers disagreeing with
// the body of request id.
func mismatch(id string) want {
	return answers(http.StatusBadRequest, map[string]int{id: codeMismatch})
}

// reaches marks w as reaching the MCP server and adds to its check that
// nothing that arrived calls countdown: no body there, decoded the way a
// lenient server would (encoding/json, the last of duplicate keys, names
// ignoring case), names the tool.
func reaches(w want) want {
	w.upstream = true
	inner := w.check
	w.check = func(t *testing.T, f *fixture, r response, reached []seen) {
		if inner != nil {
			inner(t, f, r, reached)
		}
		for _, s := range reached {
			if name, ok := callsCountdown(s.Body); ok {
				t.Errorf("the MCP server received a call of %q: %s %s %s", name, s.Method, s.Path, s.Body)
			}
		}
	}
	return w
}

// callsCountdown reports whether body holds a tools/call of countdown in
// any reading of it.
func callsCountdown(body []byte) (string, bool) {
	if bytes.Contains(bytes.ToLower(body), []byte("countdown")) {
		return "countdown", true
	}
	type msg struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	var msgs []msg
	if json.Unmarshal(body, &msgs) != nil {
		var m msg
		if json.Unmarshal(body, &m) != nil {
			return "", false
		}
		msgs = []msg{m}
	}
	for _, m := range msgs {
		if strings.EqualFold(m.Params.Name, "countdown") {
			return m.Params.Name, true
		}
	}
	return "", false
}

// openStream opens the server stream (GET /mcp) of a new MCP session of
// the demo user through replica P with headers, returns as soon as the
// answer's headers are in and closes the stream. A session has one such
// stream at a time, and the MCP server may notice the close late: each
// stream gets its own session.
func (f *fixture) openStream(t *testing.T, headers ...string) response {
	t.Helper()
	r := f.req(http.MethodGet, "/mcp", nil, on(f.p), withCookie(f.cookie), header("Accept", "text/event-stream"),
		header("Mcp-Session-Id", f.newSession(t)))
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		r.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := (&http.Client{Timeout: waitFor}).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return response{Status: resp.StatusCode, Header: resp.Header}
}

// unknownTool: the call reached the MCP server, which knows no tool of
// that name (tool names are case-sensitive and matched exactly) and
// answered id 1 with an error; no body that arrived names countdown
// exactly, the denied tool.
var unknownTool = want{status: http.StatusOK, upstream: true, check: func(t *testing.T, _ *fixture, r response, reached []seen) {
	msgs := rpcMessages(t, r)
	if len(msgs) != 1 || string(msgs[0].ID) != "1" || (msgs[0].Error == nil && !strings.Contains(string(msgs[0].Result), `"isError":true`)) {
		t.Errorf("answer %s, want the MCP server's error for id 1", r)
	}
	for _, s := range reached {
		var m struct {
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if json.Unmarshal(s.Body, &m) == nil && m.Params.Name == "countdown" {
			t.Errorf("the MCP server received a call of countdown: %s", s.Body)
		}
	}
}}

// listed: the tools/list with id reached the MCP server and its answer
// (for id, or for any id when id is "") lists whoami but not countdown.
func listed(id string) want {
	return want{status: http.StatusOK, upstream: true, check: func(t *testing.T, _ *fixture, r response, _ []seen) {
		msgs := rpcMessages(t, r)
		if len(msgs) != 1 || (id != "" && string(msgs[0].ID) != id) {
			t.Fatalf("answer %s, want one answer for id %s", r, id)
		}
		var res struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		}
		if err := json.Unmarshal(msgs[0].Result, &res); err != nil {
			t.Fatalf("tools/list result: %v (%s)", err, r)
		}
		var names []string
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		if !slices.Contains(names, "whoami") || slices.Contains(names, "countdown") {
			t.Errorf("tools/list shows %q, want whoami and not countdown", names)
		}
	}}
}

// redirected is Go's mux answering a path that is not clean with a
// redirect to /mcp, before anything is decided or forwarded; the client's
// retry is then decided at /mcp.
var redirected = want{status: http.StatusTemporaryRedirect, location: "/mcp"}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// chunked frames body as one chunk and the last chunk.
func chunked(body string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body) }

// batchOf joins messages into a batch.
func batchOf(msgs ...string) string { return "[" + strings.Join(msgs, ",") + "]" }

// freshStream: the GET reached the MCP server without Last-Event-ID in
// any spelling (case, "_" for "-").
var freshStream = want{status: http.StatusOK, upstream: true, check: func(t *testing.T, _ *fixture, _ response, reached []seen) {
	// Before it, the new session's initialize and initialized.
	var gets []seen
	for _, s := range reached {
		if s.Method == http.MethodGet {
			gets = append(gets, s)
		}
	}
	if len(gets) != 1 {
		t.Fatalf("upstream saw %d GETs, want the one", len(gets))
	}
	for k, v := range gets[0].Header {
		if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "Last-Event-ID") {
			t.Errorf("upstream got %s: %q", k, v)
		}
	}
}}

func policyCases() []attack {
	whoami := toolCall("1", "whoami")
	// theUser: the allowed call ran at the MCP server as the demo user.
	theUser := func(w want) want {
		inner := w.check
		w.check = func(t *testing.T, f *fixture, r response, reached []seen) {
			inner(t, f, r, reached)
			if !strings.Contains(string(r.Body), oidcprovider.DemoUserID) {
				t.Errorf("whoami did not run as the demo user: %s", r)
			}
		}
		return w
	}
	var tinyCalls, smallBatch []string
	smallDenials := map[string]int{}
	for i := range 1000 {
		tinyCalls = append(tinyCalls, toolCall(strconv.Itoa(i), "countdown"))
	}
	for i := range 40 {
		smallBatch = append(smallBatch, `{"jsonrpc":"2.0","id":`+strconv.Itoa(i)+`,"method":"tools/call","params":{"name":"countdown"}}`)
		smallDenials[strconv.Itoa(i)] = codeDenied
	}
	nested := strings.Repeat(`{"a":`, 600) + "1" + strings.Repeat("}", 600)
	deepCall := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"countdown","arguments":{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}}`
	padded := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"countdown","arguments":{"pad":"` + strings.Repeat("x", policyMaxBody) + `"}}}`
	cdNoArgs := func(params string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + params + `}`
	}
	v2026 := []string{"MCP-Protocol-Version: " + protocol2026}
	complete := func(ref string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":` + ref + `,"argument":{"name":"a","value":""}}}`
	}
	return []attack{
		// Baseline.
		{name: "policy: tools/call of a denied tool", send: post(countdown), want: denied("1")},
		{name: "policy: tools/call of an allowed tool reaches the MCP server", send: inSession(whoami),
			want: reaches(theUser(answers(http.StatusOK, map[string]int{"1": 0})))},

		// The MCP endpoint in other spellings.
		{name: "policy: path /MCP", send: postTo("/MCP"), want: denied("1")},
		{name: "policy: path /mcp/", send: postTo("/mcp/"), want: denied("1")},
		{name: "policy: path //mcp", send: postTo("//mcp"), want: redirected},
		{name: "policy: path /%6dcp", send: postTo("/%6dcp"), want: denied("1")},
		{name: "policy: path /%256dcp (double-encoded)", send: postTo("/%256dcp"), want: denied("1")},
		{name: "policy: path /mcp;x=1", send: postTo("/mcp;x=1"), want: denied("1")},
		{name: "policy: path /x/../mcp", send: postTo("/x/../mcp"), want: redirected},
		{name: "policy: path /x/%2e%2e/mcp", send: postTo("/x/%2e%2e/mcp"), want: denied("1")},
		{name: "policy: path /mcp%2f", send: postTo("/mcp%2f"), want: denied("1")},
		{name: "policy: path /public/%2e%2e/mcp (through the public path)", send: postTo("/public/%2e%2e/mcp"), want: denied("1")},
		// Spellings the Go SDK's mux answers 404, but a server that strips
		// trailing dots or white space, stops at a NUL, or decodes the
		// path before splitting off a query or fragment (a proxy chain)
		// routes to /mcp.
		{name: "policy: path /mcp%00", send: postTo("/mcp%00"), want: denied("1")},
		{name: "policy: path /mcp%20", send: postTo("/mcp%20"), want: denied("1")},
		{name: "policy: path /mcp%09", send: postTo("/mcp%09"), want: denied("1")},
		{name: "policy: path /mcp%0a", send: postTo("/mcp%0a"), want: denied("1")},
		{name: "policy: path /mcp.", send: postTo("/mcp."), want: denied("1")},
		{name: "policy: path /mcp%2e", send: postTo("/mcp%2e"), want: denied("1")},
		{name: "policy: path /mcp%3fx=1", send: postTo("/mcp%3fx=1"), want: denied("1")},
		{name: "policy: path /mcp%23x", send: postTo("/mcp%23x"), want: denied("1")},
		{name: "policy: path /mcp#x (raw fragment)", send: postTo("/mcp#x"), want: denied("1")},
		{name: "policy: path /mcp%3bx", send: postTo("/mcp%3bx"), want: denied("1")},
		{name: "policy: path /mcp/%2e", send: postTo("/mcp/%2e"), want: denied("1")},
		{name: "policy: path /%4d%43%50", send: postTo("/%4d%43%50"), want: denied("1")},
		{name: "policy: path /mcp\\", send: postTo("/mcp\\"), want: denied("1")},
		{name: "policy: path /mcp?name=whoami", send: postTo("/mcp?name=whoami"), want: denied("1")},
		{name: "policy: absolute-form request target", send: func(t *testing.T, f *fixture) response {
			return f.rpcRaw(t, http.MethodPost, "http://"+f.host+"/mcp", countdown)
		}, want: denied("1")},

		// Methods that reach a prompt or resource by name are decided by
		// the same rules (pkg/mcpguard/methods.go); the example server
		// has no completions, so a forwarded one would answer
		// method-not-found, not the policy's -32602.
		{name: "policy: completion/complete for a denied prompt", send: post(complete(`{"type":"ref/prompt","name":"countdown"}`)), want: denied("1")},
		{name: "policy: completion/complete for a denied resource template", send: post(complete(`{"type":"ref/resource","uri":"countdown"}`)), want: denied("1")},
		{name: "policy: completion/complete with a ref of another type", send: post(complete(`{"type":"ref/tool","name":"whoami"}`)), want: denied("1")},
		{name: "policy: completion/complete with the prompt's name under uri", send: post(complete(`{"type":"ref/prompt","uri":"whoami"}`)), want: denied("1")},
		{name: "policy: completion/complete with Ref", send: post(strings.Replace(complete(`{"type":"ref/prompt","name":"countdown"}`), `"ref"`, `"Ref"`, 1)),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: completion/complete with Name in the ref", send: post(complete(`{"type":"ref/prompt","name":"whoami","Name":"countdown"}`)),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: resources/subscribe to a denied resource", send: post(`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"countdown"}}`), want: denied("1")},
		{name: "policy: resources/subscribe with URI", send: post(`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"whoami","URI":"countdown"}}`),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: batch of a denied completion and an allowed call", send: inSession(batchOf(strings.Replace(complete(`{"type":"ref/prompt","name":"countdown"}`), `"id":1`, `"id":2`, 1), whoami)),
			want: reaches(answers(http.StatusOK, map[string]int{"1": 0, "2": codeDenied}))},

		// JSON tricks.
		{name: "policy: duplicate name, allowed first", send: post(cdNoArgs(`{"name":"whoami","name":"countdown"}`)), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: duplicate name, denied first", send: post(cdNoArgs(`{"name":"countdown","name":"whoami"}`)), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: NAME beside name", send: post(cdNoArgs(`{"name":"whoami","NAME":"countdown"}`)), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: Name alone", send: post(cdNoArgs(`{"Name":"countdown"}`)), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: params beside paramſ (long s, folds to params)", send: post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"},"param\u017f":{"name":"countdown"}}`),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: paramſ alone", send: post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","param\u017f":{"name":"countdown"}}`),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: escaped key na\\u006de", send: post(cdNoArgs(`{"na\u006de":"countdown"}`)), want: denied("1")},
		{name: "policy: escaped key beside name", send: post(cdNoArgs(`{"name":"whoami","na\u006de":"countdown"}`)), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: escaped tool name count\\u0064own", send: post(cdNoArgs(`{"name":"count\u0064own"}`)), want: denied("1")},
		{name: "policy: duplicate method", send: post(`{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"countdown"}}`),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: Method beside method", send: post(`{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"countdown"}}`),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: params twice", send: post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"},"params":{"name":"countdown"}}`),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: method tools\\/call", send: post(`{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"countdown"}}`), want: denied("1")},
		{name: "policy: method tools\\u002fcall", send: post(`{"jsonrpc":"2.0","id":1,"method":"tools\u002fcall","params":{"name":"countdown"}}`), want: denied("1")},
		{name: "policy: name in a params array", send: post(cdNoArgs(`["countdown"]`)), want: denied("1")},
		{name: "policy: name as a number", send: post(cdNoArgs(`{"name":1}`)), want: denied("1")},
		{name: "policy: arguments as a string", send: post(cdNoArgs(`{"name":"whoami","arguments":"countdown"}`)), want: denied("1")},
		{name: "policy: invalid UTF-8", send: post("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"countdown\xff\"}}"),
			want: refused(http.StatusBadRequest, codeParse)},
		{name: "policy: UTF-8 BOM before the JSON", send: post("\ufeff" + countdown), want: refused(http.StatusBadRequest, codeParse)},
		{name: "policy: whitespace around the JSON", send: post(" \r\n\t" + countdown + "\n\t "), want: denied("1")},
		{name: "policy: trailing garbage", send: post(countdown + " x"), want: refused(http.StatusBadRequest, codeParse)},
		{name: "policy: allowed call followed by a second JSON value", send: post(whoami + toolCall("2", "countdown")), want: refused(http.StatusBadRequest, codeParse)},
		{name: "policy: arguments nested 600 deep", send: post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"countdown","arguments":` + nested + `}}`),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: arguments nested 100 deep", send: post(deepCall), want: denied("1")},
		{name: "policy: no jsonrpc member", send: post(`{"id":1,"method":"tools/call","params":{"name":"countdown"}}`), want: denied("1")},
		{name: "policy: jsonrpc 1.0", send: post(`{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"countdown"}}`), want: denied("1")},
		{name: "policy: request dressed with a result", send: post(`{"jsonrpc":"2.0","id":1,"result":{},"method":"tools/call","params":{"name":"countdown"}}`), want: denied("1")},
		{name: "policy: request dressed with an error", send: post(`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"},"method":"tools/call","params":{"name":"countdown"}}`), want: denied("1")},
		{name: "policy: method null beside a result", send: post(`{"jsonrpc":"2.0","id":1,"result":{},"method":null,"params":{"name":"countdown"}}`),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: id 1e400", send: post(toolCall("1e400", "countdown")), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: id 2^63", send: post(toolCall("9223372036854775808", "countdown")), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: id 1.5", send: post(toolCall("1.5", "countdown")), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: number id", send: post(toolCall("7", "countdown")), want: denied("7")},
		{name: "policy: string id", send: post(toolCall(`"7"`, "countdown")), want: denied(`"7"`)},
		{name: "policy: null id", send: post(toolCall("null", "countdown")), want: denied("null")},
		{name: "policy: id 1e0", send: post(toolCall("1e0", "countdown")), want: denied("1e0")},
		{name: "policy: object id", send: post(toolCall(`{"a":1}`, "countdown")), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: array id", send: post(toolCall(`[1]`, "countdown")), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: boolean id", send: post(toolCall(`true`, "countdown")), want: refused(http.StatusBadRequest, codeInvalid)},
		// JSON-RPC methods are case-sensitive: not governed, forwarded,
		// and the SDK refuses it.
		{name: "policy: method Tools/Call reaches the server as an unknown method", send: inSession(`{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"whoami"}}`),
			want: reaches(want{status: http.StatusBadRequest, body: `"Tools/Call" unsupported`})},

		// Names the policy does not deny, which the MCP server does not
		// know either.
		{name: "policy: name COUNTDOWN", send: inSession(toolCall("1", "COUNTDOWN")), want: unknownTool},
		{name: "policy: name with a zero-width space", send: inSession(toolCall("1", `count\u200bdown`)), want: unknownTool},
		{name: "policy: name with a trailing space", send: inSession(toolCall("1", "countdown ")), want: unknownTool},
		{name: "policy: name with a trailing NUL", send: inSession(toolCall("1", `countdown\u0000`)), want: unknownTool},

		// Lists.
		{name: "policy: tools/list hides the denied tool", send: inSession(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), want: listed("1")},
		{name: "policy: tools/list with an escaped string id", send: inSession(`{"jsonrpc":"2.0","id":"\u0061","method":"tools/list"}`), want: listed(`"a"`)},
		{name: "policy: tools/list with id 1.0", send: inSession(`{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}`), want: listed("1")},
		// The SDK answers 1.5 as 1 and 2^53+1 as 2^53: an answer under
		// another id than the request's would pass unfiltered, so numeric
		// ids must be integers within ±(2^53-1).
		{name: "policy: tools/list with id 2^53+1", send: inSession(`{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/list"}`), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: tools/list with id 1e20", send: inSession(`{"jsonrpc":"2.0","id":100000000000000000000,"method":"tools/list"}`), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: tools/list with id 1.5", send: inSession(`{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}`), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: tools/list with id 2^53-1", send: inSession(`{"jsonrpc":"2.0","id":9007199254740991,"method":"tools/list"}`), want: listed("9007199254740991")},
		{name: "policy: tools/list with id -0", send: inSession(`{"jsonrpc":"2.0","id":-0,"method":"tools/list"}`), want: listed("")},
		{name: "policy: tools/list with id 1E2", send: inSession(`{"jsonrpc":"2.0","id":1E2,"method":"tools/list"}`), want: listed("100")},
		{name: "policy: tools/list with id null", send: inSession(`{"jsonrpc":"2.0","id":null,"method":"tools/list"}`),
			want: want{status: http.StatusBadRequest, upstream: true, body: `missing id for "tools/list"`}},
		{name: "policy: batch of tools/list with ids 2^53 and 2^53+1", send: inSession(batchOf(`{"jsonrpc":"2.0","id":9007199254740992,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/list"}`)),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: tools/list with id \"\\ud800\" (lone surrogate)", send: inSession(`{"jsonrpc":"2.0","id":"\ud800","method":"tools/list"}`), want: listed("")},
		{name: "policy: tools/list in a batch", send: inSession(batchOf(`{"jsonrpc":"2.0","id":5,"method":"tools/list"}`)), want: listed("5")},

		// Batches.
		{name: "policy: batch [allowed, denied]", send: inSession(batchOf(whoami, toolCall("2", "countdown"))),
			want: reaches(answers(http.StatusOK, map[string]int{"1": 0, "2": codeDenied}))},
		{name: "policy: batch [denied, denied]", send: post(batchOf(toolCall("1", "countdown"), toolCall(`"x"`, "countdown"))),
			want: answers(http.StatusOK, map[string]int{"1": codeDenied, `"x"`: codeDenied})},
		{name: "policy: batch of 40 denied calls", send: post(batchOf(smallBatch...)), want: answers(http.StatusOK, smallDenials)},
		{name: "policy: batch of 1000 calls", send: post(batchOf(tinyCalls...)), want: refused(http.StatusRequestEntityTooLarge, codeInvalid)},
		{name: "policy: empty batch", send: post("[]"), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: nested batch", send: post(batchOf(batchOf(countdown))), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: batch reusing an id", send: post(batchOf(whoami, countdown)), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: batch with a denied notification", send: inSession(batchOf(whoami, `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"countdown"}}`)),
			want: reaches(answers(http.StatusOK, map[string]int{"1": 0}))},

		// Notifications.
		{name: "policy: denied call as a notification", send: post(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"countdown","arguments":{"from":1}}}`),
			want: want{status: http.StatusAccepted}},

		// Transport.
		{name: "policy: gzip Content-Encoding", send: func(t *testing.T, f *fixture) response {
			return f.rpcRaw(t, http.MethodPost, "/mcp", gzipped(t, countdown), "Content-Encoding: gzip")
		}, want: refused(http.StatusUnsupportedMediaType, codeInvalid)},
		{name: "policy: Content-Encoding identity, gzip", send: func(t *testing.T, f *fixture) response {
			return f.rpcRaw(t, http.MethodPost, "/mcp", gzipped(t, countdown), "Content-Encoding: identity, gzip")
		}, want: refused(http.StatusUnsupportedMediaType, codeInvalid)},
		// Header.Get would see only "identity": every value counts.
		{name: "policy: Content-Encoding identity, then gzip in a second header", send: inSession(whoami, "Content-Encoding: identity", "Content-Encoding: gzip"),
			want: refused(http.StatusUnsupportedMediaType, codeInvalid)},
		{name: "policy: Content-Encoding identity", send: post(countdown, "Content-Encoding: identity"), want: denied("1")},
		{name: "policy: Content-Type text/plain", send: post(countdown, "Content-Type: text/plain"), want: denied("1")},
		{name: "policy: no Content-Type", send: func(t *testing.T, f *fixture) response {
			return f.rawHTTP(t, http.MethodPost, "/mcp", countdown, "Accept: application/json, text/event-stream",
				"Cookie: "+cookieName+"="+f.cookie.Value, "Content-Length: "+strconv.Itoa(len(countdown)))
		}, want: denied("1")},
		{name: "policy: body over max_body_bytes", send: post(padded), want: refused(http.StatusRequestEntityTooLarge, codeInvalid)},
		{name: "policy: chunked body", send: post(chunked(countdown), "Transfer-Encoding: chunked"), want: denied("1")},
		{name: "policy: chunked body over max_body_bytes", send: post(chunked(padded), "Transfer-Encoding: chunked"),
			want: refused(http.StatusRequestEntityTooLarge, codeInvalid)},
		// Go's server reads the body chunked and ignores Content-Length
		// (RFC 9112 6.3): what it read is what is decided.
		{name: "policy: Content-Length and chunked together", send: post(chunked(countdown), "Content-Length: 4", "Transfer-Encoding: chunked"),
			want: denied("1")},
		{name: "policy: Transfer-Encoding gzip, chunked", send: post(chunked(countdown), "Transfer-Encoding: gzip, chunked"),
			want: want{status: http.StatusNotImplemented}},
		{name: "policy: Transfer-Encoding identity", send: post(countdown, "Transfer-Encoding: identity"),
			want: want{status: http.StatusNotImplemented}},
		{name: "policy: two Transfer-Encoding headers", send: post(chunked(countdown), "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
			want: want{status: http.StatusNotImplemented}},
		{name: "policy: two Content-Length headers", send: post(countdown, "Content-Length: 1", "Content-Length: "+strconv.Itoa(len(countdown))),
			want: want{status: http.StatusBadRequest}},
		{name: "policy: GET with a tools/call body", send: func(t *testing.T, f *fixture) response {
			return f.rpcRaw(t, http.MethodGet, "/mcp", countdown, "Mcp-Session-Id: "+f.session(t))
		}, want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: GET with X-HTTP-Method-Override: POST and a body", send: func(t *testing.T, f *fixture) response {
			return f.rpcRaw(t, http.MethodGet, "/mcp", countdown, "X-HTTP-Method-Override: POST", "X-Method-Override: POST", "X-HTTP-Method: POST")
		}, want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: GET with a chunked body", send: sendAs(http.MethodGet, chunked(countdown), "Transfer-Encoding: chunked"),
			want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: lower-case method post", send: sendAs("post", countdown), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: PUT with a body", send: sendAs(http.MethodPut, countdown), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: PATCH with a body", send: sendAs(http.MethodPatch, countdown), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: DELETE with a body", send: sendAs(http.MethodDelete, countdown), want: refused(http.StatusBadRequest, codeInvalid)},
		{name: "policy: POST with X-HTTP-Method-Override: GET", send: post(countdown, "X-HTTP-Method-Override: GET"), want: denied("1")},

		// 2026-07-28 headers.
		{name: "policy: Mcp-Name whoami on a countdown body", send: post(countdown, append(v2026, "Mcp-Method: tools/call", "Mcp-Name: whoami")...), want: mismatch("1")},
		{name: "policy: Mcp-Name countdown on a whoami body", send: post(whoami, append(v2026, "Mcp-Method: tools/call", "Mcp-Name: countdown")...), want: mismatch("1")},
		{name: "policy: Mcp-Method tools/list on a tools/call body", send: post(countdown, append(v2026, "Mcp-Method: tools/list")...), want: mismatch("1")},
		{name: "policy: two Mcp-Name headers", send: post(countdown, append(v2026, "Mcp-Method: tools/call", "Mcp-Name: whoami", "Mcp-Name: countdown")...), want: mismatch("1")},
		{name: "policy: Mcp-Name whoami in Base64 on a countdown body", send: post(countdown, append(v2026, "Mcp-Method: tools/call", "Mcp-Name: =?base64?d2hvYW1p?=")...), want: mismatch("1")},
		// Go keeps Mcp_Name apart from Mcp-Name; the body decides anyway.
		{name: "policy: Mcp_Name (underscore) whoami on a countdown body", send: post(countdown, append(v2026, "Mcp_Method: tools/list", "Mcp_Name: whoami")...), want: denied("1")},
		{name: "policy: Mcp-Name in Base64 matching the body", send: post(countdown, append(v2026, "Mcp-Method: tools/call", "Mcp-Name: =?base64?Y291bnRkb3du?=")...),
			want: denied("1")},
		{name: "policy: Mcp-Method on a batch mixing methods", send: post(batchOf(toolCall("1", "whoami"), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), append(v2026, "Mcp-Method: tools/list")...),
			want: answers(http.StatusBadRequest, map[string]int{"null": codeMismatch})},

		// A public path forwards its body undecided, as it forwards
		// everything: an MCP request inside it stays a body there.
		{name: "policy: MCP request inside a public path's body", send: func(t *testing.T, f *fixture) response {
			inner := "POST /mcp HTTP/1.1\r\nHost: " + f.host + "\r\nCookie: " + cookieName + "=" + f.cookie.Value +
				"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(countdown)) + "\r\n\r\n" + countdown
			return f.rpcRaw(t, http.MethodPost, "/public/x", inner)
		}, want: want{status: http.StatusOK, upstream: true, check: func(t *testing.T, _ *fixture, _ response, reached []seen) {
			for _, s := range reached {
				if !strings.HasPrefix(s.Path, "/public/") {
					t.Errorf("the MCP server saw %s %s", s.Method, s.Path)
				}
			}
		}}},

		// Stream resumption.
		{name: "policy: GET with Last-Event-ID reaches the MCP server without it", send: func(t *testing.T, f *fixture) response {
			return f.openStream(t, "Last-Event-ID: 0_0")
		}, want: freshStream},
		// A gateway or CGI-style server may read Last_Event_ID as
		// Last-Event-ID.
		{name: "policy: GET with Last_Event_ID (underscore) reaches the MCP server without it", send: func(t *testing.T, f *fixture) response {
			return f.openStream(t, "Last_Event_ID: 0_0", "last-event-id: 0_0")
		}, want: freshStream},
	}
}
