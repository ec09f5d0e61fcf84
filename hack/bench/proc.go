package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
)

// proc is one proxy running as its own process, started as a user would
// start it (a binary with flags), so its start-up time and memory are its
// own and the refactors inside it never break the benchmark.
type proc struct {
	name    string
	url     string // base URL of the serving listener
	admin   string // base URL of the admin listener ("" when it has none)
	cmd     *exec.Cmd
	exited  chan struct{}
	logs    *tail
	logPath string        // where its output goes instead of logs ("" for logs)
	startup time.Duration // from exec to the first 200 of its readiness URL
}

// logText is the end of the child's output, for an error message.
func (p *proc) logText() string {
	if p.logPath == "" {
		return p.logs.String()
	}
	f, err := os.Open(p.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > int64(p.logs.max) {
		_, _ = f.Seek(-int64(p.logs.max), io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, int64(p.logs.max)))
	return string(b)
}

// errExited is a child that exited before it was ready: most often
// because another process took the port freeAddr had released.
var errExited = errors.New("exited before it was ready")

// freeAddr reserves a free loopback port and releases it for a child to
// take. Another process could take it in between; the child then fails to
// start and the readiness wait reports it.
func freeAddr() (string, error) {
	ln, err := stack.Listen()
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// startProc runs bin with args and waits (at most timeout) until ready
// answers 200. The child dies with the benchmark. Its output goes to
// logPath when set (appended to, so the file can be truncated while the
// child writes), else to a tail kept for error messages.
func startProc(ctx context.Context, name, bin string, args []string, ready string, timeout time.Duration, logPath string) (*proc, error) {
	p := &proc{name: name, logs: &tail{max: 16 << 10}, exited: make(chan struct{}), logPath: logPath}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%s: log file: %w", name, err)
		}
		// The child has its own descriptor once started.
		defer f.Close()
		p.cmd.Stdout, p.cmd.Stderr = f, f
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: starting %s: %w", name, bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	client := &http.Client{Timeout: time.Second}
	deadline := start.Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer")
	for time.Now().Before(deadline) {
		resp, err := client.Get(ready)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.startup = time.Since(start)
				return p, nil
			}
			err = errors.New(resp.Status)
		}
		last = err
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s %w (%v):\n%s", name, errExited, p.cmd.ProcessState, p.logText())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	p.stop()
	return nil, fmt.Errorf("%s: %s not 200 within %v (last: %v):\n%s", name, ready, timeout, last, p.logText())
}

// stop sends SIGTERM, then SIGKILL after 5s, and waits for the exit.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// rss is the process's resident set (VmRSS in /proc/<pid>/status), bytes.
func (p *proc) rss() (int64, error) {
	return vmRSS(p.cmd.Process.Pid)
}

func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// tail keeps the last max bytes written to it: a child's log for an error
// message, without holding a long run's logs.
type tail struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
