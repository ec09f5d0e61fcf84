package mcpguard

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseBody(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		err        error // nil: parses
		kinds      []kind
		names      []string
	}{
		{name: "request", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1}}}`, kinds: []kind{kindRequest}, names: []string{"a"}},
		{name: "escaped name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u0061dmin"}}`, kinds: []kind{kindRequest}, names: []string{"admin"}},
		{name: "resource uri", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`, kinds: []kind{kindRequest}, names: []string{"file:///x"}},
		{name: "notification", body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`, kinds: []kind{kindNotification}, names: []string{""}},
		{name: "client response", body: `{"jsonrpc":"2.0","id":3,"result":{}}`, kinds: []kind{kindResponse}, names: []string{""}},
		{name: "batch", body: ` [ {"jsonrpc":"2.0","id":1,"method":"ping"} , {"jsonrpc":"2.0","id":"1","method":"ping"} ] `, kinds: []kind{kindRequest, kindRequest}, names: []string{"", ""}},
		{name: "trailing whitespace", body: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n", kinds: []kind{kindRequest}, names: []string{""}},
		{name: "duplicate key", body: `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`, err: errDuplicate},
		{name: "duplicate name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, err: errDuplicate},
		{name: "case variant name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}`, err: errDuplicate},
		{name: "near miss name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"b"}}`, err: errDuplicate},
		{name: "near miss id", body: `{"jsonrpc":"2.0","ID":1,"method":"tools/call","params":{"name":"b"}}`, err: errDuplicate},
		{name: "long s", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"s":1,"\u017f":2}}}`, err: errDuplicate},
		{name: "nested duplicate", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"p":{"q":1,"Q":2}}}}`, err: errDuplicate},
		{name: "duplicate id in batch", body: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1.0,"method":"ping"}]`, err: errInvalid},
		{name: "empty batch", body: `[]`, err: errInvalid},
		{name: "batch of non-objects", body: `[1]`, err: errInvalid},
		{name: "trailing value", body: `{"jsonrpc":"2.0","id":1,"method":"ping"} {}`, err: errSyntax},
		{name: "trailing garbage", body: `{"jsonrpc":"2.0","id":1,"method":"ping"}x`, err: errSyntax},
		{name: "invalid UTF-8", body: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xff\"}}", err: errSyntax},
		{name: "empty", body: ``, err: errSyntax},
		{name: "method not string", body: `{"jsonrpc":"2.0","id":1,"method":1}`, err: errInvalid},
		{name: "object id", body: `{"jsonrpc":"2.0","id":{},"method":"ping"}`, err: errInvalid},
		{name: "too deep", body: strings.Repeat("[", 600) + strings.Repeat("]", 600), err: errInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := parseBody([]byte(tt.body))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if len(b.msgs) != len(tt.kinds) {
				t.Fatalf("%d messages", len(b.msgs))
			}
			for i, m := range b.msgs {
				if m.kind != tt.kinds[i] || m.name != tt.names[i] {
					t.Fatalf("message %d: kind %d name %q, want %d %q", i, m.kind, m.name, tt.kinds[i], tt.names[i])
				}
			}
		})
	}
}

// FuzzParseBody checks that whatever the parser accepts is read the same
// way by a lenient decoder (Go's encoding/json, which matches struct
// fields ignoring case and keeps the last duplicate): the method and the
// name the policy decides are the ones a server would act on, and the
// bytes forwarded are the bytes decided.
func FuzzParseBody(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1}}}`,
		`{"jsonrpc":"2.0","id":"x","method":"prompts/get","params":{"name":"p","NAME":"q"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a","URI":"file:///b"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/x"}]`,
		`{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u212aelvin"}}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		`[]`, `{}`, `null`, `[{}]`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":""}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{x}","URI":"y"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"Ref":{"type":"ref/prompt","name":"p"}}}`,
		`{"jsonrpc":"2.0","method":"resources/subscribe","params":{"uri":"file:///a"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBody(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if !b.batch && string(b.msgs[0].raw) != string(data) {
			t.Fatalf("single message forwarded as %q, decided on %q", b.msgs[0].raw, data)
		}
		for _, m := range b.msgs {
			var lenient struct {
				Method string
				Params struct {
					Name string
					URI  string
					Ref  struct{ Type, Name, URI string }
				}
			}
			if err := json.Unmarshal(m.raw, &lenient); err != nil {
				continue // a server would refuse it
			}
			if m.kind != kindResponse && lenient.Method != m.method {
				t.Fatalf("method %q decided, %q read leniently from %q", m.method, lenient.Method, m.raw)
			}
			if m.kind != kindResponse && m.decided != decided(m.method) {
				t.Fatalf("%s: decided = %v", m.method, m.decided)
			}
			if !m.decided || !m.hasName || m.target == "" {
				continue // undecided, or denied for want of a name
			}
			want := lenient.Params.Name
			switch {
			case m.method == methodComplete:
				ref := lenient.Params.Ref
				want = ref.Name
				if ref.Type == "ref/resource" {
					want = ref.URI
				}
				if wantTarget := map[string]string{"ref/prompt": "prompts/get", "ref/resource": "resources/read"}[ref.Type]; wantTarget != m.target {
					t.Fatalf("completion decided as %q, ref type %q read leniently from %q", m.target, ref.Type, m.raw)
				}
			case m.target == "resources/read":
				want = lenient.Params.URI
			}
			if want != m.name {
				t.Fatalf("name %q decided, %q read leniently from %q", m.name, want, m.raw)
			}
		}
	})
}

func TestIDKey(t *testing.T) {
	for _, tt := range []struct{ a, b string }{{`1`, `1.0`}, {`"a"`, `"\u0061"`}, {`-3`, `-3e0`}} {
		ka, err1 := idKey(json.RawMessage(tt.a))
		kb, err2 := idKey(json.RawMessage(tt.b))
		if err1 != nil || err2 != nil || ka != kb {
			t.Fatalf("%s and %s: %q %q %v %v", tt.a, tt.b, ka, kb, err1, err2)
		}
		if got, _ := idKey(rawID(ka)); got != ka {
			t.Fatalf("rawID(%q) = %s", ka, rawID(ka))
		}
	}
	if k1, _ := idKey(json.RawMessage(`1`)); k1 == func() string { k, _ := idKey(json.RawMessage(`"1"`)); return k }() {
		t.Fatal("1 and \"1\" are different ids")
	}
	// Ids the SDK would answer under another id are refused.
	for _, id := range []string{`1.5`, `-0.5`, `9007199254740992`, `9007199254740993`, `-9007199254740993`, `1e20`, `1e400`, `{}`, `[]`, `true`} {
		if k, err := idKey(json.RawMessage(id)); !errors.Is(err, errInvalid) {
			t.Errorf("idKey(%s) = %q, %v; want errInvalid", id, k, err)
		}
	}
	for _, id := range []string{`9007199254740991`, `-9007199254740991`, `-0`, `1E2`} {
		if _, err := idKey(json.RawMessage(id)); err != nil {
			t.Errorf("idKey(%s): %v", id, err)
		}
	}
}
