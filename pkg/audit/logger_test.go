package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/syncbuf"
)

// newJSONLogger is a logger encoding like the sidecar's (cmd/mcp-oidc-proxy/app
// NewLogger: production encoder, "ts" in ISO 8601, durations as strings),
// named "audit" as the coordinator names it, writing into buf.
func newJSONLogger(buf *bytes.Buffer, level zapcore.Level) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeDuration = zapcore.StringDurationEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(buf), level)
	return zap.New(core).Named("audit")
}

// lines decodes every JSON line written into buf.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ln := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if ln == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("line is not JSON: %v\n%s", err, ln)
		}
		out = append(out, m)
	}
	return out
}

type call struct{ method, decision, tool string }

// recordingCounter remembers every Count call.
type recordingCounter struct {
	mu    sync.Mutex
	calls []call
}

func (c *recordingCounter) Count(method, decision, tool string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call{method, decision, tool})
}

func (c *recordingCounter) got() []call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]call(nil), c.calls...)
}

func intp(n int) *int { return &n }

var started = time.Date(2026, 11, 30, 10, 15, 42, 123_000_000, time.UTC)

func fullEntry() Entry {
	return Entry{
		Time: started, RequestID: "req-1", SessionID: "sess-1", Subject: "user-123", Email: "ada@example.com",
		ClientID: "claude", Method: "tools/call", Name: "delete_repo", Decision: DecisionDenied, Rule: "admins-only",
		ErrorCode: intp(-32602), Duration: 1500 * time.Microsecond,
		Arguments: map[string]any{"repo": "infra", "api_key": "sk-live-123"},
	}
}

func TestRecordWritesOneLineFieldByField(t *testing.T) {
	var buf bytes.Buffer
	l := New(Options{Logger: newJSONLogger(&buf, zapcore.InfoLevel),
		Settings: Settings{Enabled: true, Arguments: true, RedactKeys: []string{"api_key"}}})
	l.Record(fullEntry())

	got := lines(t, &buf)
	if len(got) != 1 {
		t.Fatalf("%d lines, want 1: %s", len(got), buf.String())
	}
	want := map[string]any{
		"level": "info", "ts": "2026-11-30T10:15:42.123Z", "logger": "audit", "msg": "mcp request",
		"request_id": "req-1", "mcp_session_id": "sess-1", "sub": "user-123", "email": "ada@example.com",
		"client_id": "claude", "method": "tools/call", "name": "delete_repo", "decision": "denied",
		"rule": "admins-only", "error_code": float64(-32602), "duration": "1.5ms",
		"arguments": map[string]any{"repo": "infra", "api_key": "[REDACTED]"},
	}
	line := got[0]
	for k, w := range want {
		if g, ok := line[k]; !ok {
			t.Errorf("field %s missing", k)
		} else if gj, wj := mustJSON(t, g), mustJSON(t, w); gj != wj {
			t.Errorf("field %s = %s, want %s", k, gj, wj)
		}
	}
	for k := range line {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %s = %v", k, line[k])
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRecordOmitsEmptyOptionalFields(t *testing.T) {
	var buf bytes.Buffer
	// Arguments off (the default): even a request with arguments has none
	// in its line.
	l := New(Options{Logger: newJSONLogger(&buf, zapcore.InfoLevel), Settings: Settings{Enabled: true}})
	l.Record(Entry{Time: started, RequestID: "r", Subject: "s", Email: "e@example.com", Method: "ping",
		Decision: DecisionUngoverned, Arguments: map[string]any{"x": "y"}})
	got := lines(t, &buf)
	if len(got) != 1 {
		t.Fatalf("%d lines, want 1", len(got))
	}
	for _, k := range []string{"mcp_session_id", "client_id", "name", "rule", "error_code", "arguments"} {
		if v, ok := got[0][k]; ok {
			t.Errorf("field %s = %v written, want it omitted", k, v)
		}
	}
	for _, k := range []string{"request_id", "sub", "email", "method", "decision", "duration"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("field %s missing", k)
		}
	}
	if got[0]["duration"] != "0s" {
		t.Errorf("duration = %v, want 0s", got[0]["duration"])
	}
}

// A request without a start time still gets the line's own time.
func TestRecordWithoutTimeUsesNow(t *testing.T) {
	var buf bytes.Buffer
	l := New(Options{Logger: newJSONLogger(&buf, zapcore.InfoLevel), Settings: Settings{Enabled: true}})
	before := time.Now().Add(-time.Second)
	l.Record(Entry{Method: "ping", Decision: DecisionUngoverned})
	got := lines(t, &buf)
	if len(got) != 1 {
		t.Fatalf("%d lines, want 1", len(got))
	}
	ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", got[0]["ts"].(string))
	if err != nil {
		t.Fatalf("ts %v: %v", got[0]["ts"], err)
	}
	if ts.Before(before) {
		t.Errorf("ts = %v, want about now", ts)
	}
}

func TestRecordCountsWhetherOrNotEnabled(t *testing.T) {
	var buf bytes.Buffer
	c := &recordingCounter{}
	l := New(Options{Logger: newJSONLogger(&buf, zapcore.InfoLevel), Counter: c})
	l.Record(Entry{Method: "tools/call", Name: "search", Decision: DecisionAllowed})
	l.Record(Entry{Method: "prompts/get", Name: "summary", Decision: DecisionDenied})
	l.Record(Entry{Method: "resources/read", Name: "file:///etc/x", Decision: DecisionAllowed})
	if buf.Len() != 0 {
		t.Errorf("disabled audit wrote %q", buf.String())
	}
	want := []call{
		{"tools/call", "allowed", "search"},
		// Only a tools/call's name is a tool: prompt names and resource
		// URIs never reach the tool label.
		{"prompts/get", "denied", ""},
		{"resources/read", "allowed", ""},
	}
	if got := c.got(); !equalCalls(got, want) {
		t.Errorf("counted %v, want %v", got, want)
	}
}

func equalCalls(a, b []call) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSetSwitchesLinesAndArguments(t *testing.T) {
	var buf bytes.Buffer
	l := New(Options{Logger: newJSONLogger(&buf, zapcore.InfoLevel)})
	e := Entry{Method: "tools/call", Name: "t", Decision: DecisionAllowed,
		Arguments: map[string]any{"q": "visible", "secret_sauce": "hidden-1"}}

	l.Record(e)
	l.Set(Settings{Enabled: true})
	l.Record(e)
	l.Set(Settings{Enabled: true, Arguments: true, RedactKeys: []string{"secret"}})
	l.Record(e)
	l.Set(Settings{Enabled: true, Arguments: true})
	l.Record(e)
	l.Set(Settings{})
	l.Record(e)

	got := lines(t, &buf)
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3 (only while enabled): %s", len(got), buf.String())
	}
	if _, ok := got[0]["arguments"]; ok {
		t.Errorf("line 1 has arguments while arguments are off")
	}
	if a := mustJSON(t, got[1]["arguments"]); a != `{"q":"visible","secret_sauce":"[REDACTED]"}` {
		t.Errorf("line 2 arguments = %s", a)
	}
	// With no redact keys configured, nothing is redacted.
	if a := mustJSON(t, got[2]["arguments"]); a != `{"q":"visible","secret_sauce":"hidden-1"}` {
		t.Errorf("line 3 arguments = %s", a)
	}
}

// The audit lines are Info lines on the logger they are given: a level
// above info drops them (the README says so).
func TestRecordRespectsLoggerLevel(t *testing.T) {
	var buf bytes.Buffer
	c := &recordingCounter{}
	l := New(Options{Logger: newJSONLogger(&buf, zapcore.WarnLevel), Counter: c, Settings: Settings{Enabled: true}})
	l.Record(Entry{Method: "ping", Decision: DecisionUngoverned})
	if buf.Len() != 0 {
		t.Errorf("wrote %q at warn level", buf.String())
	}
	if len(c.got()) != 1 {
		t.Errorf("counted %d, want 1", len(c.got()))
	}
}

func TestNilLoggerAndCounter(t *testing.T) {
	l := New(Options{Settings: Settings{Enabled: true, Arguments: true}})
	// Must not panic.
	l.Record(fullEntry())
	if l.log == nil {
		t.Fatal("nil logger kept")
	}
}

func TestRecordBoundsMethodAndName(t *testing.T) {
	var buf bytes.Buffer
	l := New(Options{Logger: newJSONLogger(&buf, zapcore.InfoLevel), Settings: Settings{Enabled: true}})
	long := strings.Repeat("é", 4000)
	l.Record(Entry{Method: long, Name: long, Decision: DecisionInvalid})
	got := lines(t, &buf)
	for _, k := range []string{"method", "name"} {
		s, _ := got[0][k].(string)
		if len(s) > maxFieldBytes+len(truncatedSuffix) || !strings.HasSuffix(s, truncatedSuffix) {
			t.Errorf("%s is %d bytes (suffix %q), want at most %d ending in %q", k, len(s), s[max(0, len(s)-20):],
				maxFieldBytes+len(truncatedSuffix), truncatedSuffix)
		}
		if !json.Valid([]byte(mustJSON(t, s))) || strings.ContainsRune(s, '\uFFFD') {
			t.Errorf("%s was cut inside a character", k)
		}
	}
}

func TestRedactURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"file:///etc/hosts", "file:///etc/hosts"},
		{"search_docs", "search_docs"},
		{"postgres://app:s3cr3t@db.example.com/x", "postgres://app:xxxxx@db.example.com/x"},
		{"https://user@example.com/a", "https://user@example.com/a"},
		{"mailto:ada@example.com", "mailto:ada@example.com"},
		{"x://a:b@%zz", "x://[REDACTED]"},
	}
	for _, tt := range tests {
		if got := redactURI(tt.in); got != tt.want {
			t.Errorf("redactURI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Reloads race with requests without tearing a line or tripping -race.
func TestSetConcurrentWithRecord(t *testing.T) {
	var buf syncBuffer
	enc := zap.NewProductionEncoderConfig()
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(&buf), zapcore.InfoLevel))
	c := &recordingCounter{}
	l := New(Options{Logger: log, Counter: c})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 200 {
			l.Set(Settings{Enabled: i%2 == 0, Arguments: true, RedactKeys: []string{"password"}})
		}
	}()
	go func() {
		defer wg.Done()
		for range 200 {
			l.Record(Entry{Method: "tools/call", Decision: DecisionAllowed, Arguments: map[string]any{"password": "pw-1"}})
		}
	}()
	wg.Wait()
	if n := len(c.got()); n != 200 {
		t.Errorf("counted %d, want 200", n)
	}
	if strings.Contains(buf.String(), "pw-1") {
		t.Errorf("a redacted value leaked during a reload")
	}
}

type syncBuffer = syncbuf.Buffer
