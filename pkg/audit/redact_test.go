package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
)

// defaultKeys are config.Defaults().Audit.RedactKeys.
var defaultKeys = []string{"password", "secret", "token", "api_key", "apikey", "authorization", "credential", "private_key"}

func TestRedactorMatches(t *testing.T) {
	r := newRedactor(defaultKeys)
	tests := []struct {
		key  string
		want bool
	}{
		{"password", true},
		{"Password", true},
		{"db_password", true},
		{"x-password-hash", true},
		{"PASSWORD", true},
		{"api_key", true},
		{"X-Api-Key", true},
		{"apiKey", true},
		{"api.key", true},
		{"access_token", true},
		{"refreshToken", true},
		// Containment errs on the side of hiding (documented).
		{"max_tokens", true},
		{"Authorization", true},
		{"client_secret", true},
		{"aws_credentials", true},
		{"private-key", true},
		{"query", false},
		{"repo", false},
		{"key", false},
		{"api", false},
		{"pass", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := r.matches(tt.key); got != tt.want {
			t.Errorf("matches(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestNewRedactorIgnoresKeysWithoutLettersOrDigits(t *testing.T) {
	// "-" would normalise to "", which every key contains: it must not
	// redact everything (config validation refuses it too).
	r := newRedactor([]string{"", " ", "-", "_", "Token", "token"})
	if !reflect.DeepEqual(r.keys, []string{"token"}) {
		t.Errorf("keys = %q, want [token]", r.keys)
	}
	if r.matches("query") {
		t.Errorf("query redacted")
	}
}

func TestRedact(t *testing.T) {
	r := newRedactor([]string{"password", "api_key"})
	tests := []struct {
		name string
		in   string // JSON
		want string // JSON
	}{
		{"flat", `{"user":"ada","password":"pw"}`, `{"password":"[REDACTED]","user":"ada"}`},
		{"nested object", `{"db":{"host":"h","Password":"pw"}}`, `{"db":{"Password":"[REDACTED]","host":"h"}}`},
		{"array of objects", `{"accounts":[{"name":"a","password":"p1"},{"name":"b","db_password":"p2"}]}`,
			`{"accounts":[{"name":"a","password":"[REDACTED]"},{"db_password":"[REDACTED]","name":"b"}]}`},
		{"redacted object value", `{"password":{"old":"a","new":"b"}}`, `{"password":"[REDACTED]"}`},
		{"redacted array value", `{"X-Api-Key":["k1","k2"]}`, `{"X-Api-Key":"[REDACTED]"}`},
		{"scalars kept", `{"n":1.5,"b":true,"z":null,"s":"x"}`, `{"b":true,"n":1.5,"s":"x","z":null}`},
		{"nested arrays", `{"m":[[{"password":"p"}],[1,2]]}`, `{"m":[[{"password":"[REDACTED]"}],[1,2]]}`},
		{"empty", `{}`, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in map[string]any
			if err := json.Unmarshal([]byte(tt.in), &in); err != nil {
				t.Fatal(err)
			}
			before := mustJSON(t, in)
			got := mustJSON(t, r.redact(in))
			if got != tt.want {
				t.Errorf("redact(%s) = %s, want %s", tt.in, got, tt.want)
			}
			if after := mustJSON(t, in); after != before {
				t.Errorf("input modified: %s, was %s", after, before)
			}
		})
	}
}

func TestRedactKeepsJSONNumbers(t *testing.T) {
	dec := json.NewDecoder(strings.NewReader(`{"n":12345678901234567890,"password":1}`))
	dec.UseNumber()
	var in map[string]any
	if err := dec.Decode(&in); err != nil {
		t.Fatal(err)
	}
	got := mustJSON(t, newRedactor([]string{"password"}).redact(in))
	if got != `{"n":12345678901234567890,"password":"[REDACTED]"}` {
		t.Errorf("got %s", got)
	}
}

// A value of a type JSON decoding never makes could hide anything; it is
// not written.
func TestRedactUnsupportedTypes(t *testing.T) {
	in := map[string]any{
		"raw":    json.RawMessage(`{"password":"pw-raw"}`),
		"typed":  map[string]string{"password": "pw-typed"},
		"struct": struct{ Password string }{"pw-struct"},
	}
	got := mustJSON(t, newRedactor([]string{"password"}).redact(in))
	if got != `{"raw":"[UNSUPPORTED]","struct":"[UNSUPPORTED]","typed":"[UNSUPPORTED]"}` {
		t.Errorf("got %s", got)
	}
}

func TestRedactDepthLimit(t *testing.T) {
	// 40 nested objects: {"a":{"a":...{"a":"leaf"}}}.
	var in any = "leaf"
	for range 40 {
		in = map[string]any{"a": in}
	}
	got := newRedactor(nil).redact(in.(map[string]any))
	depth := 0
	var v any = got
	for {
		m, ok := v.(map[string]any)
		if !ok {
			break
		}
		depth++
		v = m["a"]
	}
	if depth != maxDepth || v != truncated {
		t.Errorf("written depth %d ending in %v, want %d objects then %q", depth, v, maxDepth, truncated)
	}
}

func TestRedactElementLimit(t *testing.T) {
	big := make([]any, 5000)
	for i := range big {
		big[i] = map[string]any{"i": float64(i)}
	}
	members := map[string]any{}
	for i := range 5000 {
		members[fmt.Sprintf("k%05d", i)] = "v"
	}
	tests := []struct {
		name string
		in   map[string]any
	}{
		{"array", map[string]any{"rows": big}},
		{"object", members},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRedactor(nil)
			first := mustJSON(t, r.redact(tt.in))
			if n := countElements(r.redact(tt.in)); n > maxElements+2 {
				t.Errorf("%d elements written, want at most about %d", n, maxElements)
			}
			if !strings.Contains(first, `"[TRUNCATED]"`) {
				t.Errorf("no [TRUNCATED] marker in %.200s...", first)
			}
			// The same input is cut the same way every time.
			for range 5 {
				if again := mustJSON(t, r.redact(tt.in)); again != first {
					t.Fatalf("output differs between runs")
				}
			}
		})
	}
}

func countElements(v any) int {
	switch x := v.(type) {
	case map[string]any:
		n := len(x)
		for _, e := range x {
			n += countElements(e)
		}
		return n
	case []any:
		n := len(x)
		for _, e := range x {
			n += countElements(e)
		}
		return n
	}
	return 0
}

func TestRedactStringLimit(t *testing.T) {
	in := map[string]any{"doc": strings.Repeat("ü", maxStringBytes)}
	s := newRedactor(nil).redact(in)["doc"].(string)
	if !strings.HasSuffix(s, truncatedSuffix) || len(s) > maxStringBytes+len(truncatedSuffix) {
		t.Errorf("string of %d bytes, want at most %d ending in %q", len(s), maxStringBytes+len(truncatedSuffix), truncatedSuffix)
	}
	if strings.ContainsRune(s, '\uFFFD') {
		t.Errorf("cut inside a character")
	}
}

// The property that matters: whatever the shape, no value under a
// redacted key ever appears in the bytes of the line as written.
func TestRedactedValuesNeverReachTheLine(t *testing.T) {
	args := map[string]any{
		"query": "select 1",
		"password": map[string]any{
			"nested": "leak-1", "list": []any{"leak-2", map[string]any{"x": "leak-3"}},
		},
		"connection": map[string]any{
			"host": "db", "DB_Password": "leak-4",
			"replicas": []any{
				map[string]any{"host": "r1", "apiKey": "leak-5"},
				[]any{map[string]any{"Authorization": "Bearer leak-6"}},
			},
		},
		"headers":      []any{map[string]any{"name": "X-Api-Key", "X-Api-Key": "leak-7"}},
		"access_token": "leak-8",
		"private-key":  []any{"leak-9"},
		"credentials":  map[string]any{"user": "leak-10"},
	}
	var buf bytes.Buffer
	l := New(Options{Logger: newJSONLogger(&buf, zapcore.InfoLevel),
		Settings: Settings{Enabled: true, Arguments: true, RedactKeys: defaultKeys}})
	l.Record(Entry{Method: "tools/call", Name: "q", Decision: DecisionAllowed, Arguments: args})
	out := buf.String()
	for i := 1; i <= 10; i++ {
		if leak := fmt.Sprintf("leak-%d", i); strings.Contains(out, leak) {
			t.Errorf("line contains %s: %s", leak, out)
		}
	}
	for _, keep := range []string{"select 1", `"host":"db"`, `"host":"r1"`} {
		if !strings.Contains(out, keep) {
			t.Errorf("line lost %s: %s", keep, out)
		}
	}
	// And the input the policy shares is untouched.
	if args["access_token"] != "leak-8" || args["connection"].(map[string]any)["DB_Password"] != "leak-4" {
		t.Errorf("Record modified the arguments")
	}
}
