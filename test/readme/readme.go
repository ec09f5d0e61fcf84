// Package readme reads the executable walk-through of the README ("On
// Kubernetes"): one settings block that only exports variables, then shell
// blocks named by step. The end-to-end suite runs those blocks, so what users
// read is what is tested; this package is the one reader of that format, and
// its test keeps the README within it.
//
// The format, in a section that starts with a level-2 heading:
//
//	```sh settings        first shell block: export NAME=value lines, comments
//	```sh step=<name>     every later shell block; uses only settings variables
//	```yaml (or other)    illustrations, never run
package readme

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Setting is one variable of the settings block with the README's example
// value.
type Setting struct {
	Name  string
	Value string
	// Line is the 1-based line in the README, for error messages.
	Line int
}

// Step is one runnable block.
type Step struct {
	Name string
	Body string
	Line int
}

// Walkthrough is the parsed section.
type Walkthrough struct {
	Settings []Setting
	Steps    []Step
}

// Errors Parse wraps, so callers and tests tell the problems apart with
// errors.Is.
var (
	ErrNoSection   = errors.New("section not found")
	ErrNoSettings  = errors.New("the first shell block is not ```sh settings")
	ErrBadSetting  = errors.New("the settings block may only export NAME=value")
	ErrBadFence    = errors.New("a shell block is neither ```sh settings nor ```sh step=<name>")
	ErrDuplicate   = errors.New("step name used twice")
	ErrUnknownVar  = errors.New("step uses a variable the settings block does not set")
	ErrUnusedVar   = errors.New("setting used by no step")
	ErrUnterminate = errors.New("code block not closed")
)

var (
	exportLine = regexp.MustCompile(`^export ([A-Z][A-Z0-9_]*)=(.*)$`)
	stepName   = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	// varRef matches $NAME and ${NAME...}; $(...), $1 and $? are not
	// variables.
	varRef = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))`)
)

// shellLangs are the fence languages that mark a block as shell, which in
// the walk-through must be settings or a named step.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true, "shell-session": true}

// Parse finds the level-2 heading whose text is heading and reads its
// section up to the next level-1 or level-2 heading. It reports every
// problem it finds, each wrapping one of the Err values.
func Parse(markdown, heading string) (*Walkthrough, error) {
	lines := strings.Split(markdown, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(strings.TrimPrefix(l, "## ")) == heading && strings.HasPrefix(l, "## ") {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("%w: no \"## %s\" heading", ErrNoSection, heading)
	}

	var (
		w          Walkthrough
		errs       []error
		seenShell  bool
		seenSteps  = map[string]int{}
		inFence    bool
		fenceInfo  string
		fenceStart int
		body       []string
	)
	closeBlock := func() {
		lang, attr, _ := strings.Cut(fenceInfo, " ")
		attr = strings.TrimSpace(attr)
		if !shellLangs[lang] {
			return
		}
		first := !seenShell
		seenShell = true
		switch {
		case first && lang == "sh" && attr == "settings":
			w.Settings, errs = parseSettings(body, fenceStart+1, errs)
		case first:
			errs = append(errs, fmt.Errorf("line %d: %w (it is ```%s)", fenceStart, ErrNoSettings, fenceInfo))
		case lang == "sh" && strings.HasPrefix(attr, "step=") && stepName.MatchString(strings.TrimPrefix(attr, "step=")):
			name := strings.TrimPrefix(attr, "step=")
			if prev, dup := seenSteps[name]; dup {
				errs = append(errs, fmt.Errorf("line %d: %w: %q (first at line %d)", fenceStart, ErrDuplicate, name, prev))
				return
			}
			seenSteps[name] = fenceStart
			w.Steps = append(w.Steps, Step{Name: name, Body: strings.Join(body, "\n") + "\n", Line: fenceStart})
		default:
			errs = append(errs, fmt.Errorf("line %d: %w (it is ```%s; use ```sh step=<lower-case-name>, or ```yaml for an illustration)", fenceStart, ErrBadFence, fenceInfo))
		}
	}
	for i := start; i < len(lines); i++ {
		l := lines[i]
		if !inFence && (strings.HasPrefix(l, "## ") || strings.HasPrefix(l, "# ")) {
			break
		}
		if strings.HasPrefix(l, "```") {
			if inFence {
				if strings.TrimSpace(l) == "```" {
					closeBlock()
					inFence = false
					continue
				}
			} else {
				inFence, fenceInfo, fenceStart, body = true, strings.TrimSpace(strings.TrimPrefix(l, "```")), i+1, nil
				continue
			}
		}
		if inFence {
			body = append(body, l)
		}
	}
	if inFence {
		errs = append(errs, fmt.Errorf("line %d: %w", fenceStart, ErrUnterminate))
	}
	if !seenShell {
		errs = append(errs, fmt.Errorf("%w: the section has no shell block", ErrNoSettings))
	}
	errs = append(errs, w.checkVariables()...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &w, nil
}

// parseSettings accepts only `export NAME=value` lines with a literal value
// (no expansion, substitution or second command), comments and blank lines,
// so a runner can replace every value and nothing else runs.
func parseSettings(body []string, firstLine int, errs []error) ([]Setting, []error) {
	var out []Setting
	seen := map[string]bool{}
	for i, l := range body {
		line := firstLine + i
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		m := exportLine.FindStringSubmatch(t)
		if m == nil {
			errs = append(errs, fmt.Errorf("line %d: %w: %q", line, ErrBadSetting, t))
			continue
		}
		v := m[2]
		if v == "" || strings.ContainsAny(v, "$`;|&<>(){}'\"\\ \t") {
			errs = append(errs, fmt.Errorf("line %d: %w: %s needs a plain literal value (no quotes, spaces, $, `, ;, |, &, redirections)", line, ErrBadSetting, m[1]))
			continue
		}
		if seen[m[1]] {
			errs = append(errs, fmt.Errorf("line %d: %w: %s is set twice", line, ErrBadSetting, m[1]))
			continue
		}
		seen[m[1]] = true
		out = append(out, Setting{Name: m[1], Value: v, Line: line})
	}
	return out, errs
}

// Variables returns the variables the step refers to ($NAME or ${NAME}),
// sorted, each once.
func (s Step) Variables() []string {
	set := map[string]bool{}
	for _, m := range varRef.FindAllStringSubmatch(s.Body, -1) {
		set[m[1]+m[2]] = true
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func (w *Walkthrough) checkVariables() []error {
	var errs []error
	set := map[string]bool{}
	used := map[string]bool{}
	for _, s := range w.Settings {
		set[s.Name] = true
	}
	for _, st := range w.Steps {
		for _, v := range st.Variables() {
			used[v] = true
			if !set[v] {
				errs = append(errs, fmt.Errorf("line %d: step %s: %w: %s", st.Line, st.Name, ErrUnknownVar, v))
			}
		}
	}
	if len(w.Steps) > 0 {
		for _, s := range w.Settings {
			if !used[s.Name] {
				errs = append(errs, fmt.Errorf("line %d: %w: %s", s.Line, ErrUnusedVar, s.Name))
			}
		}
	}
	return errs
}

// Step returns the named step.
func (w *Walkthrough) Step(name string) (Step, bool) {
	for _, s := range w.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return Step{}, false
}

// StepNames lists the steps in README order.
func (w *Walkthrough) StepNames() []string {
	out := make([]string, len(w.Steps))
	for i, s := range w.Steps {
		out[i] = s.Name
	}
	return out
}

// Script returns a bash script that stops at the first error, exports the
// given value of every setting, and runs the named steps in the order given.
// It refuses values for variables the settings do not define, a setting
// without a value, and unknown steps, so a runner cannot drift from the
// README unnoticed.
func (w *Walkthrough) Script(values map[string]string, steps ...string) (string, error) {
	var errs []error
	known := map[string]bool{}
	var b strings.Builder
	b.WriteString("set -euo pipefail\n")
	for _, s := range w.Settings {
		known[s.Name] = true
		v, ok := values[s.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("no value for setting %s", s.Name))
			continue
		}
		fmt.Fprintf(&b, "export %s=%s\n", s.Name, shellQuote(v))
	}
	for name := range values {
		if !known[name] {
			errs = append(errs, fmt.Errorf("%w: %s is not a README setting", ErrUnknownVar, name))
		}
	}
	for _, name := range steps {
		st, ok := w.Step(name)
		if !ok {
			errs = append(errs, fmt.Errorf("no step %q in the README (steps: %s)", name, strings.Join(w.StepNames(), ", ")))
			continue
		}
		fmt.Fprintf(&b, "# step=%s (README line %d)\n%s", st.Name, st.Line, st.Body)
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return "", errors.Join(errs...)
	}
	return b.String(), nil
}

// shellQuote quotes v for bash as one word.
func shellQuote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
