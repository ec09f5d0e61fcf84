// Package redisserver runs a real, throw-away redis-server for tests, so the
// Redis session store is tested against the component it runs against in
// production rather than a fake. Each server listens on a free loopback port,
// keeps nothing on disk unless asked to (WithAppendOnly), and is killed when
// the test ends. Fault tests can freeze it (Pause), kill it (Stop) and start
// it again on the same port and data directory (Restart), and can run
// replicas and Sentinels (StartSentinel) for failover tests.
package redisserver

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// installHint is printed when redis-server is missing, so whoever runs the
// tests knows exactly how to fix their machine.
const installHint = "apt-get install -y redis-server"

// startTimeout bounds how long Start waits for the server to answer PING.
const startTimeout = 10 * time.Second

// Option changes how the server is started.
type Option func(*config)

type config struct {
	bind     string
	username string
	password string
	args     []string
	sentinel *sentinelConfig
}

// WithPassword protects the default user with password (requirepass), for
// tests of password-only authentication.
func WithPassword(password string) Option {
	return func(c *config) { c.username, c.password = "", password }
}

// WithBind makes the server listen on host (an address of this machine)
// instead of 127.0.0.1, for clients that cannot reach the host's loopback:
// pods of the test cluster reach the node address 198.18.0.1. The port is
// still chosen free on that address; Addr and URL name it.
func WithBind(host string) Option {
	return func(c *config) { c.bind = host }
}

// WithUser creates an ACL user with full access and disables the default
// user, for tests of username/password (Redis 6 ACL) authentication.
func WithUser(username, password string) Option {
	return func(c *config) { c.username, c.password = username, password }
}

// WithArgs appends raw redis-server arguments (for example
// "--cluster-enabled", "yes"); they are passed as given.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// WithAppendOnly turns on the append-only file with an fsync after every
// write (appendonly yes, appendfsync always): the most durable production
// setting, under which a SIGKILL loses no acknowledged write, so a Restart
// comes back with every session.
func WithAppendOnly() Option {
	return WithArgs("--appendonly", "yes", "--appendfsync", "always")
}

// WithReplicaOf makes the server a replica of the master at addr
// (host:port).
func WithReplicaOf(addr string) Option {
	return func(c *config) {
		host, port, _ := net.SplitHostPort(addr)
		c.args = append(c.args, "--replicaof", host, port)
	}
}

// Server is one running redis-server process.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	cfg  config

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
	runs int
}

// Start launches redis-server on a free loopback port in a temporary
// directory, waits until it answers PING and stops it when the test ends.
// A missing redis-server binary fails the test with the install command.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redis-server not found in PATH (%v); install it with: %s", err, installHint)
	}
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir()}
	for _, o := range opts {
		o(&s.cfg)
	}
	if s.cfg.bind == "" {
		s.cfg.bind = "127.0.0.1"
	}
	port, err := freePort(s.cfg.bind)
	if err != nil {
		tb.Fatalf("redisserver: find a free port: %v", err)
	}
	s.port = port
	tb.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		tb.Fatalf("redisserver: %v", err)
	}
	return s
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string {
	return net.JoinHostPort(s.cfg.bind, strconv.Itoa(s.port))
}

// URL is a redis:// URL for database 0, including the credentials the
// server was started with, ready for redis.ParseURL.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}
	switch {
	case s.cfg.username != "":
		u.User = url.UserPassword(s.cfg.username, s.cfg.password)
	case s.cfg.password != "":
		u.User = url.UserPassword("", s.cfg.password)
	}
	return u.String()
}

// Stop kills the server (SIGKILL, no chance to save) and waits for it to
// exit. It is safe to call more than once, also on a paused server. Without
// WithAppendOnly the data is lost.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Restart stops the server if it runs and starts it again on the same port,
// so clients configured with Addr or URL can reconnect after an outage.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	s.stopLocked()
	s.mu.Unlock()
	if err := s.start(); err != nil {
		s.tb.Fatalf("redisserver: restart: %v", err)
	}
}

// Pause freezes the server with SIGSTOP: it keeps its port and its
// connections, which accept bytes but never answer, the way a hung or
// swapped-out Redis behaves. Resume or Stop ends the pause.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a server frozen by Pause (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.tb.Fatalf("redisserver: %v sent to a server that is not running", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("redisserver: send %v: %v", sig, err)
	}
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs++
	logPath := filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.runs))
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create log file: %w", err)
	}
	var args []string
	if s.cfg.sentinel != nil {
		conf, err := s.cfg.sentinel.write(s.dir)
		if err != nil {
			_ = logFile.Close()
			return err
		}
		// Sentinel rewrites its configuration file, so it gets one of its
		// own; the binary is the same redis-server.
		args = append(args, conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", s.cfg.bind,
		"--dir", s.dir,
		"--daemonize", "no",
		"--protected-mode", "no",
	)
	if s.cfg.sentinel == nil {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	switch {
	case s.cfg.username != "":
		args = append(args,
			"--user", s.cfg.username, "on", ">"+s.cfg.password, "~*", "&*", "+@all",
			"--user", "default", "off")
	case s.cfg.password != "":
		args = append(args, "--requirepass", s.cfg.password)
	}
	args = append(args, s.cfg.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(s.Addr())
		if err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("redis-server exited during start-up: %s", readLog(logPath))
		default:
		}
		if time.Now().After(deadline) {
			s.stopLocked()
			return fmt.Errorf("redis-server did not answer PING within %s (last error: %w): %s",
				startTimeout, err, readLog(logPath))
		}
		// Poll again shortly; the server usually starts in a few ms.
		select {
		case <-done:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ping sends an inline PING and accepts any reply: a server that answers
// "-NOAUTH" is up, which is all Start needs to know.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if err := conn.SetDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "-") {
		return errors.New("unexpected reply to PING: " + strings.TrimSpace(line))
	}
	if strings.HasPrefix(line, "-LOADING") {
		return errors.New("server still loading")
	}
	return nil
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}
