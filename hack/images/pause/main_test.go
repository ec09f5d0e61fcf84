package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// TestReapCollectsZombies forks children that nothing waits for, and checks
// that reap collects all of them (so none is left as a zombie).
func TestReapCollectsZombies(t *testing.T) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatalf("need the `true` program on PATH (coreutils): %v", err)
	}
	const children = 3
	pids := map[int]bool{}
	for range children {
		pid, err := syscall.ForkExec(truePath, []string{"true"}, &syscall.ProcAttr{})
		if err != nil {
			t.Fatalf("fork: %v", err)
		}
		pids[pid] = true
	}
	// The children may not have exited yet: reap until they all have.
	reaped := 0
	waitfor.Poll(10*time.Second, waitfor.Interval, func() bool {
		n, err := reap()
		if err != nil {
			t.Fatalf("reap: %v", err)
		}
		reaped += n
		return reaped >= children
	})
	if reaped != children {
		t.Fatalf("reaped %d children, want %d", reaped, children)
	}
	for pid := range pids {
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); !errors.Is(err, syscall.ECHILD) {
			t.Errorf("child %d still waitable after reap: %v", pid, err)
		}
	}
	if n, err := reap(); n != 0 || err != nil {
		t.Errorf("reap with no children = %d, %v; want 0, nil", n, err)
	}
}

func TestLoop(t *testing.T) {
	tests := []struct {
		name      string
		signals   []os.Signal
		wantReaps int
	}{
		{"SIGTERM stops", []os.Signal{syscall.SIGTERM, syscall.SIGCHLD}, 0},
		{"SIGINT stops", []os.Signal{syscall.SIGINT}, 0},
		{"SIGCHLD reaps then SIGTERM stops", []os.Signal{syscall.SIGCHLD, syscall.SIGCHLD, syscall.SIGTERM}, 2},
		{"closed channel stops", []os.Signal{syscall.SIGCHLD}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sigs := make(chan os.Signal, len(tt.signals))
			for _, s := range tt.signals {
				sigs <- s
			}
			close(sigs)
			reaps := 0
			code := loop(sigs, func() (int, error) { reaps++; return 0, nil })
			if code != 0 || reaps != tt.wantReaps {
				t.Errorf("loop = %d with %d reaps, want 0 with %d", code, reaps, tt.wantReaps)
			}
		})
	}
}

// TestBinaryExitsOnSIGTERM builds the command and checks it stays up until
// SIGTERM, then exits 0.
func TestBinaryExitsOnSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pause")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	// A pipe of our own rather than StderrPipe, so that cmd.Wait below does
	// not close it under the reader.
	stderr, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stderr = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	// pause warns that it is not PID 1 only after its signal handlers are
	// in place (the Go runtime catches every signal from the start, so
	// /proc's SigCgt cannot tell), so the signal below tests its handler
	// and not the default action.
	warned := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if !seen && sc.Text() == notFirstWarning {
				seen = true
				warned <- true
			}
		}
		if !seen {
			warned <- false
		}
	}()
	select {
	case ok := <-warned:
		if !ok {
			_ = cmd.Process.Kill()
			t.Fatal("pause closed stderr without its not-PID-1 warning")
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("pause did not install its signal handlers within 10s")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pause after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("pause did not exit within 10s of SIGTERM")
	}
}
