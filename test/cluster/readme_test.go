package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/readme"
)

// readmeHeading is the README section the suite walks.
const readmeHeading = "On Kubernetes"

// readmeRunner runs the README's step blocks with bash (through
// readme.Walkthrough.Script, which exports this run's value of every
// setting) and remembers which it ran.
type readmeRunner struct {
	walk   *readme.Walkthrough
	values map[string]string
	env    []string
	dir    string

	mu  sync.Mutex
	ran map[string]bool
}

func newReadmeRunner(root string, values map[string]string, env []string) (*readmeRunner, error) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		return nil, fmt.Errorf("reading the README: %w", err)
	}
	walk, err := readme.Parse(string(b), readmeHeading)
	if err != nil {
		return nil, fmt.Errorf("README %q: %w", readmeHeading, err)
	}
	// Script refuses a setting without a value and a value for a variable
	// the README does not set; check that now, before the cluster work.
	if _, err := walk.Script(values); err != nil {
		return nil, fmt.Errorf("the suite's values and the README's settings disagree: %w", err)
	}
	return &readmeRunner{walk: walk, values: values, env: env, dir: root, ran: map[string]bool{}}, nil
}

// run runs the named step in the repository's root, bounded by timeout
// (the whole process group is killed then), and returns its combined output.
func (r *readmeRunner) run(ctx context.Context, step string, timeout time.Duration) ([]byte, error) {
	script, err := r.walk.Script(r.values, step)
	if err != nil {
		return nil, err
	}
	st, _ := r.walk.Step(step)
	r.mu.Lock()
	r.ran[step] = true
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir, cmd.Env = r.dir, r.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return out.Bytes(), fmt.Errorf("README step %s (line %d) did not finish within %s:\n%s", step, st.Line, timeout, indent(out.Bytes()))
	case err != nil:
		return out.Bytes(), fmt.Errorf("README step %s (line %d): %w:\n%s", step, st.Line, err, indent(out.Bytes()))
	}
	return out.Bytes(), nil
}

// notRun lists the README's steps the suite has not run, in README order.
func (r *readmeRunner) notRun() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, name := range r.walk.StepNames() {
		if !r.ran[name] {
			out = append(out, name)
		}
	}
	return out
}
