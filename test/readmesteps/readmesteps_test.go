package readmesteps

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

const good = "# Title\n\n```sh\necho not in the section\n```\n\n" +
	"## On Kubernetes\n\nText.\n\n" +
	"```sh settings\n# what you set\nexport NS=demo\nexport GREETING=\"hello there\"\n```\n\n" +
	"```yaml\nkind: Ignored\n```\n\n" +
	"### Sub\n\n" +
	"```sh step=first\necho \"$GREETING in $NS\"\n```\n\n" +
	"```sh step=second\ntest \"$NS\" = other\n```\n\n" +
	"## Next section\n\n```sh\necho outside\n```\n"

func TestParse(t *testing.T) {
	sec, err := Parse([]byte(good), "On Kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sec.Settings, []string{"NS", "GREETING"}) {
		t.Errorf("Settings = %v", sec.Settings)
	}
	var names []string
	for _, s := range sec.Steps {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"first", "second"}) {
		t.Fatalf("steps = %v", names)
	}
	if st, _ := sec.Step("first"); st.Script != "echo \"$GREETING in $NS\"\n" || st.Line != 23 {
		t.Errorf("first = %+v", st)
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name, md, want string
	}{
		{"no section", "# Other\n", "no heading"},
		{"no settings", "## On Kubernetes\n```sh step=a\ntrue\n```\n", "must be ```sh settings"},
		{"plain sh block", "## On Kubernetes\n```sh settings\nexport A=1\n```\n```sh\nls\n```\n", "neither settings nor step"},
		{"bad step name", "## On Kubernetes\n```sh settings\nexport A=1\n```\n```sh step=Big_Name\nls\n```\n", "neither settings nor step"},
		{"duplicate step", "## On Kubernetes\n```sh settings\nexport A=1\n```\n```sh step=a\nls\n```\n```sh step=a\nls\n```\n", "appears twice"},
		{"settings not exports", "## On Kubernetes\n```sh settings\nA=1\n```\n```sh step=a\nls\n```\n", "not `export NAME=value`"},
		{"second settings", "## On Kubernetes\n```sh settings\nexport A=1\n```\n```sh settings\nexport B=1\n```\n", "second settings"},
		{"no steps", "## On Kubernetes\n```sh settings\nexport A=1\n```\n", "no ```sh step"},
		{"unterminated", "## On Kubernetes\n```sh settings\nexport A=1\n", "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.md), "On Kubernetes")
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrFormat containing %q", err, tt.want)
			}
		})
	}
}

func TestRunner(t *testing.T) {
	sec, err := Parse([]byte(good), "On Kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRunner(sec, map[string]string{"NS": "x"}, nil, ""); err == nil || !strings.Contains(err.Error(), "GREETING") {
		t.Fatalf("a missing value must be refused naming it, got %v", err)
	}
	if _, err := NewRunner(sec, map[string]string{"NS": "x", "GREETING": "y", "EXTRA": "z"}, nil, ""); err == nil || !strings.Contains(err.Error(), "EXTRA") {
		t.Fatalf("a value the README does not set must be refused naming it, got %v", err)
	}
	r, err := NewRunner(sec, map[string]string{"NS": "mine", "GREETING": "hi; it's"}, []string{"PATH=" + os.Getenv("PATH")}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out, err := r.Run(ctx, "first", 10*time.Second)
	if err != nil || string(out) != "hi; it's in mine\n" {
		t.Fatalf("first: %q, %v", out, err)
	}
	if _, err := r.Run(ctx, "second", 10*time.Second); err == nil || !strings.Contains(err.Error(), "step second (README line 27)") {
		t.Fatalf("a failing step must fail naming it and its line, got %v", err)
	}
	if _, err := r.Run(ctx, "third", time.Second); err == nil || !strings.Contains(err.Error(), "no step \"third\"") {
		t.Fatalf("an unknown step must be refused, got %v", err)
	}
	if got := r.NotRun(); len(got) != 0 {
		t.Errorf("NotRun = %v after running both", got)
	}
}

func TestRunnerTimeoutKillsTheStep(t *testing.T) {
	md := "## On Kubernetes\n```sh settings\nexport A=1\n```\n```sh step=hang\nsleep 60 & wait\n```\n```sh step=never\ntrue\n```\n"
	sec, err := Parse([]byte(md), "On Kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(sec, map[string]string{"A": "1"}, []string{"PATH=" + os.Getenv("PATH")}, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = r.Run(context.Background(), "hang", 300*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run returned after %s; the process group must be killed at the deadline", d)
	}
	if got := r.NotRun(); !slices.Equal(got, []string{"never"}) {
		t.Errorf("NotRun = %v, want [never]", got)
	}
}
