// Package readmesteps makes a README section executable: it extracts the
// section's shell blocks, fenced as ```sh settings (the variables a reader
// sets, exports only) and ```sh step=<name> (the commands), and runs a step
// with bash under values the caller chooses for those variables. The cluster
// suite walks the README's "On Kubernetes" section this way, so the commands
// a user copies are the commands that are tested. It does not depend on
// package testing.
package readmesteps

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrFormat means the section breaks the block conventions.
var ErrFormat = errors.New("readmesteps: README section format")

// Section is the executable part of one README section.
type Section struct {
	// Heading is the heading line the section starts with.
	Heading string
	// Settings are the variables the settings block exports, in order.
	Settings []string
	// Steps are the step blocks in README order.
	Steps []Step
}

// Step is one ```sh step=<name> block.
type Step struct {
	Name   string
	Script string
	// Line is the 1-based line of the opening fence, for messages.
	Line int
}

// Step returns the step called name.
func (s *Section) Step(name string) (Step, bool) {
	for _, st := range s.Steps {
		if st.Name == name {
			return st, true
		}
	}
	return Step{}, false
}

var (
	headingRe = regexp.MustCompile(`^(#{1,6})\s+(.*)$`)
	fenceRe   = regexp.MustCompile("^(```+|~~~+)\\s*(\\S*)\\s*(.*)$")
	exportRe  = regexp.MustCompile(`^export\s+([A-Za-z_][A-Za-z0-9_]*)=`)
	stepRe    = regexp.MustCompile(`^step=([a-z0-9][a-z0-9-]*)$`)
)

// shellLangs are the info strings of shell blocks; every one of them in the
// section must be the settings block or a step.
var shellLangs = []string{"sh", "bash", "shell"}

// Parse extracts the section whose heading text starts with heading (for
// example "On Kubernetes") from markdown. The section runs to the next
// heading of the same or a higher level. Its first shell block must be
// ```sh settings, holding only comments and `export NAME=value` lines; every
// other shell block must be ```sh step=<name> with a unique name.
func Parse(markdown []byte, heading string) (*Section, error) {
	sc := bufio.NewScanner(bytes.NewReader(markdown))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var (
		sec       *Section
		level     int
		inFence   bool
		fence     string
		capture   *strings.Builder
		kind      string // "settings", "step" or "" (not captured)
		stepName  string
		stepLine  int
		lineNo    int
		sawShell  bool
		sawSettng bool
		settings  strings.Builder
	)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if inFence {
			if strings.HasPrefix(strings.TrimSpace(line), fence) && strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(line), fence[:1])) == "" {
				inFence = false
				if capture != nil {
					switch kind {
					case "settings":
						settings.WriteString(capture.String())
					case "step":
						if _, dup := sec.Step(stepName); dup {
							return nil, fmt.Errorf("%w: line %d: step %q appears twice", ErrFormat, stepLine, stepName)
						}
						sec.Steps = append(sec.Steps, Step{Name: stepName, Script: capture.String(), Line: stepLine})
					}
				}
				capture = nil
				continue
			}
			if capture != nil {
				capture.WriteString(line)
				capture.WriteByte('\n')
			}
			continue
		}
		if m := headingRe.FindStringSubmatch(line); m != nil {
			if sec == nil {
				if strings.HasPrefix(m[2], heading) {
					sec, level = &Section{Heading: line}, len(m[1])
				}
				continue
			}
			if len(m[1]) <= level {
				break
			}
			continue
		}
		m := fenceRe.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		inFence, fence = true, m[1]
		if sec == nil || !slices.Contains(shellLangs, m[2]) {
			continue
		}
		info := strings.TrimSpace(m[3])
		switch {
		case !sawShell && info == "settings":
			kind, sawSettng = "settings", true
		case !sawShell:
			return nil, fmt.Errorf("%w: line %d: the first shell block of %q must be ```sh settings, found %q", ErrFormat, lineNo, heading, strings.TrimSpace(line))
		case info == "settings":
			return nil, fmt.Errorf("%w: line %d: a second settings block", ErrFormat, lineNo)
		case stepRe.MatchString(info):
			kind, stepName, stepLine = "step", stepRe.FindStringSubmatch(info)[1], lineNo
		default:
			return nil, fmt.Errorf("%w: line %d: shell block %q is neither settings nor step=<name> (lower-case letters, digits, dashes)", ErrFormat, lineNo, strings.TrimSpace(line))
		}
		sawShell = true
		capture = &strings.Builder{}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("readmesteps: read: %w", err)
	}
	switch {
	case sec == nil:
		return nil, fmt.Errorf("%w: no heading starting with %q", ErrFormat, heading)
	case inFence:
		return nil, fmt.Errorf("%w: unterminated code block", ErrFormat)
	case !sawSettng:
		return nil, fmt.Errorf("%w: %q has no ```sh settings block", ErrFormat, heading)
	case len(sec.Steps) == 0:
		return nil, fmt.Errorf("%w: %q has no ```sh step=<name> block", ErrFormat, heading)
	}
	for i, l := range strings.Split(settings.String(), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		m := exportRe.FindStringSubmatch(l)
		if m == nil {
			return nil, fmt.Errorf("%w: settings line %d %q is not `export NAME=value`", ErrFormat, i+1, l)
		}
		if slices.Contains(sec.Settings, m[1]) {
			return nil, fmt.Errorf("%w: settings export %s twice", ErrFormat, m[1])
		}
		sec.Settings = append(sec.Settings, m[1])
	}
	return sec, nil
}

// ParseFile is Parse on a file.
func ParseFile(path, heading string) (*Section, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("readmesteps: %w", err)
	}
	sec, err := Parse(b, heading)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sec, nil
}

// Runner runs the steps of a section with bash.
type Runner struct {
	section *Section
	values  map[string]string
	env     []string
	dir     string

	mu  sync.Mutex
	ran map[string]int
}

// NewRunner checks that values gives every settings variable a value (and
// names no variable the settings block lacks, which would mean the README
// and its caller disagree) and returns a runner that starts bash in dir with
// env (for example PATH and KUBECONFIG) plus those values.
func NewRunner(sec *Section, values map[string]string, env []string, dir string) (*Runner, error) {
	var missing, extra []string
	for _, v := range sec.Settings {
		if _, ok := values[v]; !ok {
			missing = append(missing, v)
		}
	}
	for k := range values {
		if !slices.Contains(sec.Settings, k) {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		return nil, fmt.Errorf("readmesteps: the README settings (%s) and the runner's values disagree: no value for %v, values for variables the README does not set %v",
			strings.Join(sec.Settings, ", "), missing, extra)
	}
	return &Runner{section: sec, values: values, env: env, dir: dir, ran: map[string]int{}}, nil
}

// Run runs step name with `bash -euo pipefail`, bounded by timeout (the
// whole process group is killed when it passes), and returns its combined
// output. The settings variables are exported with the runner's values, so
// the README's own example values are never used.
func (r *Runner) Run(ctx context.Context, name string, timeout time.Duration) ([]byte, error) {
	st, ok := r.section.Step(name)
	if !ok {
		names := make([]string, 0, len(r.section.Steps))
		for _, s := range r.section.Steps {
			names = append(names, s.Name)
		}
		return nil, fmt.Errorf("readmesteps: the README has no step %q (it has %v)", name, names)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", st.Script)
	cmd.Dir = r.dir
	cmd.Env = append([]string(nil), r.env...)
	for _, k := range r.section.Settings {
		cmd.Env = append(cmd.Env, k+"="+r.values[k])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r.mu.Lock()
	r.ran[name]++
	r.mu.Unlock()
	if ctx.Err() != nil {
		return out.Bytes(), fmt.Errorf("readmesteps: step %s (README line %d) did not finish within %s: %w\n%s", name, st.Line, timeout, ctx.Err(), out.Bytes())
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("readmesteps: step %s (README line %d): %w\n%s", name, st.Line, err, out.Bytes())
	}
	return out.Bytes(), nil
}

// NotRun lists the steps Run has not been called for, in README order, so
// a suite can prove it ran every command the README shows.
func (r *Runner) NotRun() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.section.Steps {
		if r.ran[s.Name] == 0 {
			out = append(out, s.Name)
		}
	}
	return out
}
