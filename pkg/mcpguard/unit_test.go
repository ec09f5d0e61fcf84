package mcpguard_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpguard"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
)

// serveOnce runs one request through h with an authenticated bob.
func serveOnce(h http.Handler, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	ctx := identity.NewContext(r.Context(), &identity.Identity{Subject: "bob", Email: "bob@example.com", Method: "bearer"})
	ctx = bearer.NewContext(ctx, &bearer.Token{Subject: "bob", ClientID: "client-1", Scopes: []string{"mcp"}})
	ctx = requestid.NewContext(ctx, "rid-1")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r.WithContext(ctx))
	return w
}

func okHandler(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusAccepted)
}

// TestPassThroughUntouched: without rules and audit the request reaches
// the next handler as it came, body unread, with no allocation added.
func TestPassThroughUntouched(t *testing.T) {
	for _, s := range []*mcpguard.Settings{nil, {}, {Audit: true}} { // Audit without a Recorder records nothing
		g := mcpguard.New(mcpguard.Options{})
		if s != nil {
			g.Set(*s)
		}
		body := &watchedBody{Reader: strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`)}
		r := httptest.NewRequest(http.MethodPost, "/mcp", body)
		var seen *http.Request
		g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r })).ServeHTTP(httptest.NewRecorder(), r)
		if seen != r || body.read {
			t.Fatalf("settings %+v: same request %v, body read %v", s, seen == r, body.read)
		}
	}
	bare := http.HandlerFunc(okHandler)
	guarded := mcpguard.New(mcpguard.Options{Recorder: &recorder{}}).Wrap(bare)
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	w := &nopWriter{h: http.Header{}}
	b := testing.AllocsPerRun(100, func() { bare.ServeHTTP(w, r) })
	gd := testing.AllocsPerRun(100, func() { guarded.ServeHTTP(w, r) })
	if gd != b {
		t.Fatalf("guard without policy: %v allocs per request, bare handler %v", gd, b)
	}
}

type watchedBody struct {
	io.Reader
	read bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read = true
	return b.Reader.Read(p)
}

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

func BenchmarkPassThrough(b *testing.B) {
	bare := http.HandlerFunc(okHandler)
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	w := &nopWriter{h: http.Header{}}
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bare.ServeHTTP(w, r)
		}
	})
	b.Run("guard without policy", func(b *testing.B) {
		h := mcpguard.New(mcpguard.Options{Recorder: &recorder{}}).Wrap(bare)
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
}

func guardWith(p mcpguard.Policy, rec *recorder, now func() time.Time) *mcpguard.Guard {
	opts := mcpguard.Options{Now: now}
	if rec != nil {
		opts.Recorder = rec
	}
	g := mcpguard.New(opts)
	g.Set(mcpguard.Settings{Policy: p, MaxBodyBytes: 2048, MaxListBytes: 2048})
	return g
}

// TestFailClosed covers refusals that need no server.
func TestFailClosed(t *testing.T) {
	rec := &recorder{}
	reached := false
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })
	h := guardWith(policy, rec, nil).Wrap(next)

	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(call("1", "echo", "{}")))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r) // no identity
	if w.Code != 500 || reached || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("no identity: %d %s reached=%v", w.Code, w.Body, reached)
	}
	w = serveOnce(h, call("1", "echo", "{}"), map[string]string{"Content-Encoding": "gzip"})
	if e := decodeError(t, w.Body.String()); w.Code != 415 || reached || e.Error.Code != -32600 {
		t.Fatalf("gzip body: %d %s", w.Code, w.Body)
	}
	// A rule that fails to evaluate denies.
	failing := mcpguard.PolicyFunc(func(*mcppolicy.Caller) mcpguard.Binding { return errBinding{} })
	w = serveOnce(guardWith(failing, rec, nil).Wrap(next), call("4", "echo", "{}"), nil)
	if e := decodeError(t, w.Body.String()); w.Code != 200 || reached || e.Error.Code != mcpguard.CodeDenied || string(e.ID) != "4" {
		t.Fatalf("failing rule: %d %s", w.Code, w.Body)
	}
	// GET and DELETE pass untouched, even without identity.
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		reached = false
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(m, "/mcp", nil))
		if !reached {
			t.Fatalf("%s did not reach the server", m)
		}
	}
}

type errBinding struct{}

func (errBinding) Decide(*mcppolicy.Request) mcppolicy.Decision {
	return mcppolicy.Decision{Allow: true, Rule: "broken", Err: errors.New("no such key: claims.team")}
}
func (errBinding) Visible(string, string) bool { return true }

// TestAuditFields asserts one entry field by field, with the upstream's
// error code taken from a JSON and from an SSE answer.
func TestAuditFields(t *testing.T) {
	start := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, sse := range []bool{false, true} {
		clk := fakeclock.New(start)
		rec := &recorder{}
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			clk.Advance(250 * time.Millisecond)
			msg := `{"jsonrpc":"2.0","id":"c1","error":{"code":-32000,"message":"boom"}}`
			if sse {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, "event: message\ndata: "+msg+"\n\n")
				clk.Advance(time.Second) // after the answer: not counted
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, msg)
		})
		serveOnce(guardWith(policy, rec, clk.Now).Wrap(next),
			`{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi","n":2}}}`,
			map[string]string{"Mcp-Session-Id": "sess-9"})
		got := rec.all()
		if len(got) != 1 {
			t.Fatalf("sse=%v: %d entries", sse, len(got))
		}
		e := got[0]
		want := audit.Entry{Time: start, RequestID: "rid-1", SessionID: "sess-9", Subject: "bob", Email: "bob@example.com",
			ClientID: "client-1", Method: "tools/call", Name: "echo", Decision: audit.DecisionAllowed, Rule: "allow-bob",
			Duration: 250 * time.Millisecond}
		if e.ErrorCode == nil || *e.ErrorCode != -32000 {
			t.Fatalf("sse=%v: error code %v, want -32000", sse, e.ErrorCode)
		}
		if e.Arguments["text"] != "hi" || e.Arguments["n"] == nil || len(e.Arguments) != 2 {
			t.Fatalf("sse=%v: arguments %v", sse, e.Arguments)
		}
		e.ErrorCode, e.Arguments = nil, nil
		if !reflect.DeepEqual(e, want) {
			t.Fatalf("sse=%v: entry\n%+v\nwant\n%+v", sse, e, want)
		}
	}
}

// TestHotReload: Set changes the decision of the next request.
func TestHotReload(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	})
	g := guardWith(policy, &recorder{}, nil)
	h := g.Wrap(next)
	if w := serveOnce(h, call("1", "whoami", "{}"), nil); !strings.Contains(w.Body.String(), "not allowed") {
		t.Fatalf("before reload: %s", w.Body)
	}
	g.Set(mcpguard.Settings{Policy: fakePolicy{"bob": {"whoami"}}})
	if w := serveOnce(h, call("1", "whoami", "{}"), nil); w.Body.String() != `{"jsonrpc":"2.0","id":1,"result":{}}` {
		t.Fatalf("after reload: %s", w.Body)
	}
}

const bigList = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"whoami","description":"`

// TestListsFailClosed: a list that cannot be filtered is replaced by an
// error, never relayed.
func TestListsFailClosed(t *testing.T) {
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	huge := bigList + strings.Repeat("x", 4096) + `"}]}}`
	for _, tt := range []struct {
		name string
		next http.HandlerFunc
	}{
		{"JSON too large", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, huge)
		}},
		{"SSE event too large", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message\ndata: "+huge+"\n\n")
		}},
		{"SSE line cut across writes", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message\ndata: "+huge[:1500])
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, huge[1500:]+"\n\n")
		}},
		{"SSE list event cut off by the end of the stream", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message\ndata: "+bigList+"a tool\"}")
		}},
		{"SSE list event with bare CR line ends", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: "+bigList+"\"}]}}\r\rdata: x\n\n")
		}},
		{"JSON list in a type clients do not read as JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, bigList+`"}]}}`)
		}},
		{"JSON list without a content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			_, _ = io.WriteString(w, bigList+`"}]}}`)
		}},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "<html>whoami</html>")
		}},
		{"compressed", func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Accept-Encoding") != "" {
				t.Errorf("Accept-Encoding %q forwarded", r.Header.Get("Accept-Encoding"))
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = io.WriteString(w, bigList+`"}]}}`)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			w := serveOnce(guardWith(policy, rec, nil).Wrap(tt.next), list, map[string]string{"Accept-Encoding": "gzip"})
			body := w.Body.String()
			if strings.Contains(body, "whoami") || !strings.Contains(body, `"code":-32603`) || !strings.Contains(body, `"id":1`) {
				t.Fatalf("answer %s", body)
			}
			if e := rec.all(); len(e) != 1 || e[0].ErrorCode == nil || *e[0].ErrorCode != mcpguard.CodeListUnfiltered {
				t.Fatalf("audit %+v", e)
			}
		})
	}
}

// TestSSEFilterKeepsEventFields: only the list response's event is
// rewritten; its id: and retry: lines stay, other events pass unchanged,
// CRLF line ends included.
func TestSSEFilterKeepsEventFields(t *testing.T) {
	progress := "event: message\r\nid: 7\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\r\n\r\n"
	other := "data: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"tools\":[{\"name\":\"whoami\"}]}}\n\n"
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, ": comment\n\n"+progress[:20])
		_, _ = io.WriteString(w, progress[20:]+other)
		_, _ = io.WriteString(w, "id: 8\nretry: 500\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\n")
		_, _ = io.WriteString(w, "data: \"result\":{\"tools\":[{\"name\":\"whoami\"},{\"name\":\"echo\",\"description\":\"<b>\"}],\"nextCursor\":\"c\"}}\n\n")
		_, _ = io.WriteString(w, "data: after\n\n")
	})
	w := serveOnce(guardWith(policy, &recorder{}, nil).Wrap(next), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil)
	want := ": comment\n\n" + progress + other +
		"id: 8\nretry: 500\nevent: message\n" +
		`data: {"id":1,"jsonrpc":"2.0","result":{"cacheScope":"private","nextCursor":"c","tools":[{"name":"echo","description":"<b>"}]}}` + "\n\n" +
		"data: after\n\n"
	if got := w.Body.String(); got != want {
		t.Fatalf("stream\n%q\nwant\n%q", got, want)
	}
}

// TestAuditOnly: without rules nothing is filtered or denied, and every
// request is recorded as ungoverned.
func TestAuditOnly(t *testing.T) {
	rec := &recorder{}
	g := mcpguard.New(mcpguard.Options{Recorder: rec})
	g.Set(mcpguard.Settings{Audit: true})
	resp := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"whoami"}]}}`
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, resp)
	})
	w := serveOnce(g.Wrap(next), `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami"}}]`, nil)
	if w.Body.String() != resp {
		t.Fatalf("answer %s", w.Body)
	}
	var got []string
	for _, e := range rec.all() {
		got = append(got, e.Method+" "+e.Decision)
	}
	slices.Sort(got)
	if want := []string{"tools/call ungoverned", "tools/list ungoverned"}; !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
}

// TestGovernedNotification: a tools/call without an id is decided too; a
// denied one is dropped (a lenient server would run it unanswered).
func TestGovernedNotification(t *testing.T) {
	rec := &recorder{}
	var got []string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, string(b))
		w.WriteHeader(http.StatusAccepted)
	})
	h := guardWith(policy, rec, nil).Wrap(next)
	denied := `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"whoami"}}`
	allowed := `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}`
	if w := serveOnce(h, denied, nil); w.Code != http.StatusAccepted || len(got) != 0 {
		t.Fatalf("denied notification: %d, forwarded %q", w.Code, got)
	}
	if w := serveOnce(h, "["+denied+","+allowed+"]", nil); w.Code != http.StatusAccepted || len(got) != 1 || got[0] != "["+allowed+"]" {
		t.Fatalf("batch: %d, forwarded %q", w.Code, got)
	}
	if e := rec.all(); len(e) != 2 || e[0].Decision != audit.DecisionDenied || e[0].Name != "whoami" {
		t.Fatalf("audit %+v", e)
	}
}

// TestMergeIntoHeldJSON: the proxy's denials are appended to a held JSON
// batch answer whatever its spacing, and a single answer becomes an array.
func TestMergeIntoHeldJSON(t *testing.T) {
	for _, tt := range []struct{ upstream, want string }{
		{"[{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"no\"}}]\n",
			`[{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}},{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"tool \"whoami\" is not allowed by this server's policy"}}]`},
		{"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"no\"}} ",
			`[{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}},{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"tool \"whoami\" is not allowed by this server's policy"}}]`},
		{"[ ]", `[{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"tool \"whoami\" is not allowed by this server's policy"}}]`},
	} {
		for _, withList := range []bool{true, false} {
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", strconv.Itoa(len(tt.upstream)))
				_, _ = io.WriteString(w, tt.upstream)
			})
			if tt.upstream == "[ ]" && withList {
				continue
			}
			first := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
			if withList {
				first = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
			}
			w := serveOnce(guardWith(policy, &recorder{}, nil).Wrap(next), `[`+first+`,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami"}}]`, nil)
			var compact bytes.Buffer
			if err := json.Compact(&compact, w.Body.Bytes()); err != nil {
				t.Fatalf("list=%v: invalid JSON %s: %v", withList, w.Body, err)
			}
			if got := compact.String(); got != tt.want {
				t.Fatalf("list=%v: answer\n%s\nwant\n%s", withList, got, tt.want)
			}
			if cl := w.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(w.Body.Len()) {
				t.Fatalf("list=%v: Content-Length %s for %d bytes", withList, cl, w.Body.Len())
			}
		}
	}
}

// TestCaller: the policy sees bearer and cookie callers in one shape.
func TestCaller(t *testing.T) {
	var got []mcppolicy.Caller
	p := mcpguard.PolicyFunc(func(c *mcppolicy.Caller) mcpguard.Binding {
		got = append(got, *c)
		return fakeBinding{}
	})
	next := http.HandlerFunc(okHandler)
	h := guardWith(p, nil, nil).Wrap(next)
	serveOnce(h, call("1", "echo", "{}"), nil) // bearer bob
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(call("1", "echo", "{}")))
	cookie := &identity.Identity{Subject: "carol", Email: "c@example.com", EmailVerified: true, Groups: []string{"g"}, Method: "cookie",
		Claims: map[string]any{"team": "x"}}
	h.ServeHTTP(httptest.NewRecorder(), r.WithContext(identity.NewContext(r.Context(), cookie)))
	want := []mcppolicy.Caller{
		{Subject: "bob", Email: "bob@example.com", ClientID: "client-1", Scopes: []string{"mcp"}, Auth: "bearer"},
		{Subject: "carol", Email: "c@example.com", EmailVerified: true, Groups: []string{"g"}, Claims: map[string]any{"team": "x"}, Auth: "cookie"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("callers\n%+v\nwant\n%+v", got, want)
	}
}

// TestNameHeader: Mcp-Name is compared with the body's name as sent (the
// Go SDK sends it raw) or Base64-decoded (SEP-2243's =?base64?...?= form
// for values that are not plain ASCII).
func TestNameHeader(t *testing.T) {
	p := fakePolicy{"bob": {"café"}}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"caf\u00e9"}}`
	for _, tt := range []struct {
		header string
		status int
	}{
		{"café", http.StatusAccepted},
		{"=?base64?Y2Fmw6k=?=", http.StatusAccepted},
		{"cafe", http.StatusBadRequest},
		{"=?base64?Y2FmZQ==?=", http.StatusBadRequest},
		{"=?base64?not base64?=", http.StatusBadRequest},
	} {
		w := serveOnce(guardWith(p, nil, nil).Wrap(http.HandlerFunc(okHandler)), body,
			map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": tt.header})
		if w.Code != tt.status {
			t.Fatalf("Mcp-Name %q: %d %s, want %d", tt.header, w.Code, w.Body, tt.status)
		}
		if tt.status == http.StatusBadRequest {
			if e := decodeError(t, w.Body.String()); e.Error.Code != mcpguard.CodeHeaderMismatch || string(e.ID) != "1" {
				t.Fatalf("Mcp-Name %q: %s", tt.header, w.Body)
			}
		}
	}
}
