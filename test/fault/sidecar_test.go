package fault

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// sidecar is the real mcp-oidc-proxy binary running as a subprocess.
type sidecar struct {
	cmd    *exec.Cmd
	URL    string // base URL of the serving listener
	Admin  string // base URL of the admin listener
	out    *syncBuffer
	done   chan struct{} // closed when the process has exited
	exited time.Time
	err    error // Wait's result
}

// buildSidecar compiles ./cmd/mcp-oidc-proxy into a temporary directory,
// as a user would build it (no race detector: this is the shipped binary).
func buildSidecar(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "mcp-oidc-proxy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/mcp-oidc-proxy")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/mcp-oidc-proxy: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startSidecar runs bin with the flags for its listeners and waits until
// /readyz answers 200. The process is killed when the test ends if it is
// still running.
func startSidecar(tb testing.TB, bin string, flags func(listen, admin string) []string) *sidecar {
	tb.Helper()
	listen, admin := freeAddr(tb), freeAddr(tb)
	s := &sidecar{URL: "http://" + listen, Admin: "http://" + admin, out: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, flags(listen, admin)...)
	s.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tb.TempDir()}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		s.exited = time.Now()
		close(s.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if tb.Failed() {
			tb.Logf("sidecar output tail:\n%s", tailOf(s.out.String(), 6000))
		}
	})
	waitfor.NoError(tb, setupTimeout, "the sidecar's /readyz to answer 200", func() error {
		select {
		case <-s.done:
			tb.Fatalf("the sidecar exited during start-up: %v\n%s", s.err, s.out.String())
		default:
		}
		resp, err := http.Get(s.Admin + "/readyz")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	return s
}

// signal sends sig to the process.
func (s *sidecar) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("send %v: %v", sig, err)
	}
}

// exitCode is the process's exit code once it has exited.
func (s *sidecar) exitCode() int { return s.cmd.ProcessState.ExitCode() }

// syncBuffer is a bytes.Buffer safe for the process's writers and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
