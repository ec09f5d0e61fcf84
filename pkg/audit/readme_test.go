package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
)

// readmeAudit returns the README's "## Audit" section.
func readmeAudit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\n## Audit\n")
	end := strings.Index(s, "<!-- audit end -->")
	if start < 0 || end < start {
		t.Fatal(`README has no "## Audit" section ending in <!-- audit end -->`)
	}
	return s[start:end]
}

// zapKeys are the keys every line of the sidecar's logger has (and pod,
// namespace in a pod); the table documents the audit fields.
var zapKeys = []string{"level", "ts", "logger", "msg", "pod", "namespace"}

// The README's field table lists exactly the fields the logger writes, and
// its example line has the shape of a real one.
func TestREADMEDocumentsTheLine(t *testing.T) {
	sec := readmeAudit(t)
	var table []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(sec, -1) {
		table = append(table, m[1])
	}

	var buf bytes.Buffer
	l := New(Options{Logger: newJSONLogger(&buf, zapcore.InfoLevel),
		Settings: Settings{Enabled: true, Arguments: true, RedactKeys: defaultKeys}})
	l.Record(fullEntry())
	line := lines(t, &buf)[0]
	var written []string
	for k := range line {
		if !slices.Contains(zapKeys, k) || k == "ts" {
			written = append(written, k)
		}
	}
	slices.Sort(written)
	documented := slices.Sorted(slices.Values(table))
	if !slices.Equal(written, documented) {
		t.Errorf("README table fields %v, logger writes %v", documented, written)
	}

	ex := regexp.MustCompile("(?s)```json\n(.*?)\n```").FindStringSubmatch(sec)
	if ex == nil {
		t.Fatal("no ```json example line in the Audit section")
	}
	var example map[string]any
	if err := json.Unmarshal([]byte(ex[1]), &example); err != nil {
		t.Fatalf("example line is not JSON: %v", err)
	}
	for k, v := range line {
		ev, ok := example[k]
		if !ok {
			t.Errorf("example line lacks %s", k)
			continue
		}
		if k == "logger" || k == "msg" || k == "level" {
			if ev != v {
				t.Errorf("example %s = %v, the logger writes %v", k, ev, v)
			}
		}
	}
	for k := range example {
		if _, ok := line[k]; !ok && !slices.Contains(zapKeys, k) {
			t.Errorf("example line has %s, which the logger does not write", k)
		}
	}
	if a, _ := example["arguments"].(map[string]any); a["api_key"] != redacted {
		t.Errorf("example arguments %v do not show a redacted api_key", example["arguments"])
	}
}
