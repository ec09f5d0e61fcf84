package readme

import (
	"errors"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// Heading is the README section the end-to-end suite walks.
const heading = "On Kubernetes"

func readREADME(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestREADMEWalkthrough keeps the README's Kubernetes section executable:
// settings only export, steps use only settings, and the steps test/cluster
// relies on are there, in order.
func TestREADMEWalkthrough(t *testing.T) {
	w, err := Parse(readREADME(t), heading)
	if err != nil {
		t.Fatalf("README %q section breaks the walk-through format:\n%v", heading, err)
	}
	wantSteps := []string{"install-injector", "wait-injector", "app-namespace", "app-secret",
		"app-config", "app-deploy", "annotate", "wait-app", "troubleshoot"}
	if got := w.StepNames(); !reflect.DeepEqual(got, wantSteps) {
		t.Errorf("steps = %v, want %v (test/cluster runs them by name; tell it when they change)", got, wantSteps)
	}
	wantSettings := []string{"INJECTOR_NAMESPACE", "NAMESPACE", "IMAGE_REGISTRY", "IMAGE_TAG", "OIDC_ISSUER",
		"OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "REDIS_URL", "EXTERNAL_URL", "ALLOWED_EMAIL_DOMAIN", "INSECURE_COOKIES"}
	var got []string
	for _, s := range w.Settings {
		got = append(got, s.Name)
	}
	if !reflect.DeepEqual(got, wantSettings) {
		t.Errorf("settings = %v, want %v (test/cluster sets each of them)", got, wantSettings)
	}
	for _, st := range w.Steps {
		if strings.Contains(st.Body, "sudo") {
			t.Errorf("step %s uses sudo; the walk-through needs only kubectl and helm", st.Name)
		}
	}
}

// TestREADMEStepsAreBash checks every step (and the settings) parses as
// bash, without running anything.
func TestREADMEStepsAreBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed to check the README's shell blocks (apt-get install bash): %v", err)
	}
	w, err := Parse(readREADME(t), heading)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	for _, s := range w.Settings {
		values[s.Name] = s.Value
	}
	script, err := w.Script(values, w.StepNames()...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bash, "-n", "-c", script).CombinedOutput()
	if err != nil {
		t.Errorf("bash -n refuses the README's blocks: %v\n%s", err, out)
	}
}

func TestParse(t *testing.T) {
	const settings = "```sh settings\n# comment\n\nexport A=x\nexport B=https://h.example/p?q=1\n```\n"
	tests := []struct {
		name    string
		md      string
		wantErr error
		steps   []string
	}{
		{
			name:  "valid",
			md:    "# T\n## K\ntext\n" + settings + "```yaml\nx: $NOPE\n```\n```sh step=one\necho \"$A\" ${B}\n```\n```sh step=two-2\necho $(date) $1 $?\n```\n## Next\n```sh\nother section\n```\n",
			steps: []string{"one", "two-2"},
		},
		{name: "no section", md: "## Other\n" + settings, wantErr: ErrNoSection},
		{name: "first block is a step", md: "## K\n```sh step=one\necho\n```\n" + settings, wantErr: ErrNoSettings},
		{name: "no shell block", md: "## K\n```yaml\na: b\n```\n", wantErr: ErrNoSettings},
		{name: "settings runs a command", md: "## K\n```sh settings\nexport A=x\nkubectl get pods\n```\n```sh step=s\necho $A\n```\n", wantErr: ErrBadSetting},
		{name: "settings substitutes", md: "## K\n```sh settings\nexport A=$(openssl rand -hex 4)\n```\n```sh step=s\necho $A\n```\n", wantErr: ErrBadSetting},
		{name: "settings chains", md: "## K\n```sh settings\nexport A=x; rm -rf /tmp/x\n```\n```sh step=s\necho $A\n```\n", wantErr: ErrBadSetting},
		{name: "settings refers to another", md: "## K\n```sh settings\nexport A=x\nexport B=${A}y\n```\n```sh step=s\necho $A $B\n```\n", wantErr: ErrBadSetting},
		{name: "settings without export", md: "## K\n```sh settings\nA=x\n```\n```sh step=s\necho $A\n```\n", wantErr: ErrBadSetting},
		{name: "setting twice", md: "## K\n```sh settings\nexport A=x\nexport A=y\n```\n```sh step=s\necho $A\n```\n", wantErr: ErrBadSetting},
		{name: "unknown variable", md: "## K\n" + settings + "```sh step=s\necho $A $B $HOME\n```\n", wantErr: ErrUnknownVar},
		{name: "unknown braced variable", md: "## K\n" + settings + "```sh step=s\necho $A $B ${NS:-x}\n```\n", wantErr: ErrUnknownVar},
		{name: "unused setting", md: "## K\n" + settings + "```sh step=s\necho $A\n```\n", wantErr: ErrUnusedVar},
		{name: "unnamed shell block", md: "## K\n" + settings + "```sh step=s\necho $A $B\n```\n```sh\necho\n```\n", wantErr: ErrBadFence},
		{name: "bash block", md: "## K\n" + settings + "```sh step=s\necho $A $B\n```\n```bash step=t\necho\n```\n", wantErr: ErrBadFence},
		{name: "bad step name", md: "## K\n" + settings + "```sh step=Install_It\necho $A $B\n```\n", wantErr: ErrBadFence},
		{name: "duplicate step", md: "## K\n" + settings + "```sh step=s\necho $A $B\n```\n```sh step=s\necho\n```\n", wantErr: ErrDuplicate},
		{name: "unclosed block", md: "## K\n" + settings + "```sh step=s\necho $A $B\n", wantErr: ErrUnterminate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Parse(tt.md, "K")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := w.StepNames(); !reflect.DeepEqual(got, tt.steps) {
				t.Errorf("steps = %v, want %v", got, tt.steps)
			}
		})
	}
}

func TestStepVariables(t *testing.T) {
	st := Step{Body: "echo \"$B\" ${A} ${C:-x} $(date) $1 $? $$ \\$ $A\n"}
	if got, want := st.Variables(), []string{"A", "B", "C"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Variables() = %v, want %v", got, want)
	}
}

func TestScript(t *testing.T) {
	md := "## K\n```sh settings\nexport A=x\nexport B=y\n```\n```sh step=one\necho \"$A\"\n```\n```sh step=two\necho \"$B\"\n```\n"
	w, err := Parse(md, "K")
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.Script(map[string]string{"A": "it's", "B": "b"}, "two", "one")
	if err != nil {
		t.Fatal(err)
	}
	want := "set -euo pipefail\nexport A='it'\\''s'\nexport B='b'\n# step=two (README line 9)\necho \"$B\"\n# step=one (README line 6)\necho \"$A\"\n"
	if got != want {
		t.Errorf("Script() =\n%s\nwant\n%s", got, want)
	}
	out, err := exec.Command("bash", "-c", got).CombinedOutput()
	if err != nil || string(out) != "b\nit's\n" {
		t.Errorf("running the script: %v, output %q, want \"b\\nit's\\n\"", err, out)
	}

	for _, tc := range []struct {
		name   string
		values map[string]string
		steps  []string
	}{
		{"missing value", map[string]string{"A": "x"}, []string{"one"}},
		{"unknown value", map[string]string{"A": "x", "B": "y", "C": "z"}, []string{"one"}},
		{"unknown step", map[string]string{"A": "x", "B": "y"}, []string{"three"}},
	} {
		if _, err := w.Script(tc.values, tc.steps...); err == nil {
			t.Errorf("%s: Script accepted it", tc.name)
		}
	}
}
