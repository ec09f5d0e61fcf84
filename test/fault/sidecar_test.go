package fault

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/syncbuf"
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

// built is the sidecar binary, compiled once per test process.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// buildSidecar compiles ./cmd/mcp-oidc-proxy once into a temporary
// directory (removed by TestMain), as a user would build it: no race
// detector, this is the shipped binary.
func buildSidecar(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "fault-sidecar-")
		if built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "mcp-oidc-proxy")
		cmd := exec.Command("go", "build", "-o", built.path, "./cmd/mcp-oidc-proxy")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build ./cmd/mcp-oidc-proxy: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		tb.Fatal(built.err)
	}
	return built.path
}

// TestMain removes the built binary and keeps go-redis' process-wide pool
// logger (connection refused while Redis is down, by design) off stderr.
func TestMain(m *testing.M) {
	redis.SetLogger(session.RedisLogger{Log: zap.NewNop()})
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
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

// syncBuffer collects a process's output and a replica's logger.
type syncBuffer = syncbuf.Buffer

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
