package oidc

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestExtraClaims(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	// 1,000 '<' encode as \u003c: 6,000 bytes once encoded again.
	escaped := `"` + strings.Repeat("<", 1000) + `"`
	tests := []struct {
		name    string
		raw     rawClaims
		names   []string
		want    map[string]any
		dropped []string
	}{
		{"nothing listed", rawClaims{"department": raw(`"r"`)}, nil, nil, nil},
		{"listed and present, decoded JSON types",
			rawClaims{"s": raw(`"x"`), "b": raw(`true`), "n": raw(`4.5`), "a": raw(`["p",1]`), "o": raw(`{"k":"v"}`), "other": raw(`"y"`)},
			[]string{"s", "b", "n", "a", "o"},
			map[string]any{"s": "x", "b": true, "n": 4.5, "a": []any{"p", float64(1)}, "o": map[string]any{"k": "v"}}, nil},
		{"absent and null are not kept", rawClaims{"null": raw(`null`)}, []string{"null", "absent"}, nil, nil},
		{"reserved names are never kept",
			rawClaims{"iss": raw(`"i"`), "sub": raw(`"s"`), "email": raw(`"e"`), "groups": raw(`["g"]`), "scope": raw(`"s"`), "ext": raw(`{}`), "sid": raw(`"x"`)},
			[]string{"iss", "sub", "email", "groups", "scope", "ext", "sid"}, nil, nil},
		{"repeated name kept once", rawClaims{"d": raw(`"x"`)}, []string{"d", "d"}, map[string]any{"d": "x"}, nil},
		{"too large: dropped, smaller later ones kept",
			rawClaims{"a": raw(`"` + strings.Repeat("a", 3000) + `"`), "big": raw(`"` + strings.Repeat("b", 2000) + `"`), "c": raw(`"c"`)},
			[]string{"a", "big", "c"},
			map[string]any{"a": strings.Repeat("a", 3000), "c": "c"}, []string{"big"}},
		{"size counts the encoding kept, escapes included",
			rawClaims{"lt": raw(escaped)}, []string{"lt"}, nil, []string{"lt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			got := extraClaims(tt.raw, tt.names, zap.New(core))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("kept %v, want %v", got, tt.want)
			}
			enc, err := json.Marshal(got)
			if err != nil || len(enc) > MaxExtraClaimsBytes {
				t.Fatalf("encoded kept claims: %d bytes, %v", len(enc), err)
			}
			var dropped []string
			for _, l := range logs.All() {
				dropped = append(dropped, l.ContextMap()["claim"].(string))
				line, _ := json.Marshal(l.ContextMap())
				if strings.Contains(string(line), "bbbb") || strings.Contains(string(line), "<<<<") {
					t.Fatalf("warning carries the value: %s", line)
				}
			}
			if !reflect.DeepEqual(dropped, tt.dropped) {
				t.Fatalf("warned about %v, want %v", dropped, tt.dropped)
			}
		})
	}
}

// TestExtraClaimsFillTheCap: claims that together encode to exactly the
// cap are all kept; one byte more drops the last.
func TestExtraClaimsFillTheCap(t *testing.T) {
	// {"a":"…"} is 8 bytes around the value.
	for _, tt := range []struct {
		n    int
		kept bool
	}{{MaxExtraClaimsBytes - 8, true}, {MaxExtraClaimsBytes - 7, false}} {
		got := extraClaims(rawClaims{"a": json.RawMessage(`"` + strings.Repeat("v", tt.n) + `"`)}, []string{"a"}, zap.NewNop())
		enc, _ := json.Marshal(got)
		if (got != nil) != tt.kept || len(enc) > MaxExtraClaimsBytes {
			t.Fatalf("value of %d bytes: kept %v (%d bytes encoded), want kept %v", tt.n, got != nil, len(enc), tt.kept)
		}
	}
}
