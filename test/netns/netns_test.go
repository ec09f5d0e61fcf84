// Package netns tests the redirect port takeover end to end in real network
// namespaces: the real mcp-oidc-proxy binary runs `init-redirect` and the
// proxy inside a "pod" namespace, and a "client" namespace reaches the pod
// over a veth pair, as another pod would. Both namespaces are created by the
// test, so nothing touches the host's network. It needs root (CI runs it as
// root).
package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/redirect"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/syncbuf"
)

const (
	clientAddr  = "192.0.2.1" // TEST-NET-1, only inside our namespaces
	podAddr     = "192.0.2.2"
	clientAddr6 = "2001:db8::1" // documentation prefix, only inside our namespaces
	podAddr6    = "2001:db8::2"
	otherPort   = 9090  // another app port, which the redirect must not touch
	appPort     = 8080  // the pod port the app listens on
	proxyPort   = 15080 // the proxy's protected listener
	adminPort   = 15090 // the proxy's admin listener
)

// netns is one network namespace created by the test.
type netns struct {
	name string
	fd   int
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newNetns(t *testing.T, name string) *netns {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	fd, err := unix.Open(filepath.Join("/var/run/netns", name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return &netns{name: name, fd: fd}
}

// do runs fn on an OS thread switched into ns. Sockets keep the namespace
// they were created in, so listeners and connections made by fn work from
// any goroutine afterwards. The thread is never unlocked, so the runtime
// discards it rather than reusing a thread in the wrong namespace.
func (ns *netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", ns.name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// client is an HTTP client whose connections are made inside ns. Keep-alives
// are off: a connection opened before the redirect would otherwise keep
// reaching the app through its conntrack entry.
func (ns *netns) client() *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := ns.do(func() error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true, Proxy: nil},
	}
}

// appSeen is what the app reports about a request it received.
type appSeen struct {
	App           bool   `json:"app"`
	Path          string `json:"path"`
	RemoteIP      string `json:"remote_ip"`
	ForwardedFor  string `json:"x_forwarded_for"`
	ForwardedHost string `json:"x_forwarded_host"`
}

// startApp runs the "MCP server" on port inside the pod, on every address
// (IPv4 and IPv6), as apps usually listen.
func startApp(t *testing.T, pod *netns, port int) {
	t.Helper()
	var ln net.Listener
	if err := pod.do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(appSeen{
			App: true, Path: r.URL.Path, RemoteIP: host,
			ForwardedFor: r.Header.Get("X-Forwarded-For"), ForwardedHost: r.Header.Get("X-Forwarded-Host"),
		})
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// buildBinary builds the real mcp-oidc-proxy.
func buildBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "mcp-oidc-proxy")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-proxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer collects a child's output for failure messages.
type syncBuffer = syncbuf.Buffer

// inPod runs the binary inside the pod namespace and returns its stderr.
func inPod(t *testing.T, pod *netns, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", pod.name, bin}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	return stderr.String(), err
}

// redirectRules lists the rules in the proxy's table inside the pod.
func redirectRules(t *testing.T, pod *netns) int {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(pod.fd))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tb := range tables {
		if tb.Name != redirect.TableName {
			continue
		}
		rules, err := conn.GetRules(tb, &nftables.Chain{Name: redirect.ChainName, Table: tb})
		if err != nil {
			t.Fatal(err)
		}
		n += len(rules)
	}
	return n
}

func getJSON(t *testing.T, c *http.Client, req *http.Request, into any) int {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("%s %s: status %d, body %q is not JSON: %v", req.Method, req.URL, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestRedirectTakesOverThePodPortInANetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates network namespaces, a veth pair and nftables rules (CI runs it as root)")
	}
	bin := buildBinary(t)

	id := strconv.Itoa(os.Getpid())
	client := newNetns(t, "mop-client-"+id)
	pod := newNetns(t, "mop-pod-"+id)
	vethClient, vethPod := "mopc"+id, "mopp"+id
	run(t, "ip", "link", "add", vethClient, "netns", client.name, "type", "veth", "peer", "name", vethPod, "netns", pod.name)
	run(t, "ip", "-n", client.name, "addr", "add", clientAddr+"/24", "dev", vethClient)
	run(t, "ip", "-n", client.name, "link", "set", vethClient, "up")
	run(t, "ip", "-n", pod.name, "addr", "add", podAddr+"/24", "dev", vethPod)
	run(t, "ip", "-n", pod.name, "link", "set", vethPod, "up")
	// IPv6 too (nodad: usable at once), so the rule is shown to cover both
	// families.
	run(t, "ip", "-n", client.name, "addr", "add", clientAddr6+"/64", "dev", vethClient, "nodad")
	run(t, "ip", "-n", pod.name, "addr", "add", podAddr6+"/64", "dev", vethPod, "nodad")

	startApp(t, pod, appPort)
	startApp(t, pod, otherPort)
	fromClient := client.client()
	fromPod := pod.client()
	podURL := fmt.Sprintf("http://%s:%d", podAddr, appPort)
	podURL6 := fmt.Sprintf("http://[%s]:%d", podAddr6, appPort)

	// Control: before the takeover the client reaches the app directly, so
	// the assertions below can fail.
	var seen appSeen
	if code := getJSON(t, fromClient, newRequest(t, http.MethodGet, podURL+"/mcp", nil), &seen); code != http.StatusOK || !seen.App || seen.ForwardedFor != "" {
		t.Fatalf("before init-redirect: status %d, app saw %+v; want the app answering directly", code, seen)
	}
	if code := getJSON(t, fromClient, newRequest(t, http.MethodGet, podURL6+"/mcp", nil), &seen); code != http.StatusOK || !seen.App || seen.ForwardedFor != "" {
		t.Fatalf("before init-redirect, over IPv6: status %d, app saw %+v; want the app answering directly", code, seen)
	}

	// The proxy: OIDC mode (its provider is unreachable, which does not
	// matter to an unauthenticated API caller), /public/* forwarded without
	// login, and the app's readiness probe handed over as the injector does.
	handover, err := probe.Encode(probe.Set{probe.Path("app", probe.Readiness): {
		HTTPGet: &probe.HTTPGetAction{Path: "/healthz", Port: probe.PortNumber(appPort)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	proxyLog := &syncBuffer{}
	proxy := exec.Command("ip", "netns", "exec", pod.name, bin,
		"--listen", fmt.Sprintf(":%d", proxyPort), // as injected: every address, both families
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort),
		"--upstream", fmt.Sprintf("http://127.0.0.1:%d", appPort),
		"--auth-mode", "oidc",
		"--oidc-discovery-url", "http://127.0.0.1:1",
		"--oidc-client-id", "netns-test",
		"--public-paths", "/public/*",
		// The pod IPs, as the injector allows them ($(POD_IP)); other
		// Host names get 421.
		"--allowed-hosts", podAddr+","+podAddr6)
	proxy.Env = append(os.Environ(), probe.EnvVar+"="+handover)
	proxy.Stdout, proxy.Stderr = proxyLog, proxyLog
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- proxy.Wait() }()
	t.Cleanup(func() {
		_ = proxy.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = proxy.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", proxyLog.String())
		}
	})

	// The real `wait` subcommand, as the classic sidecar's postStart hook.
	if out, err := inPod(t, pod, bin, "wait", "--url", fmt.Sprintf("http://127.0.0.1:%d/healthz", adminPort), "--timeout", "30s"); err != nil {
		t.Fatalf("wait for the proxy: %v\n%s\nproxy log:\n%s", err, out, proxyLog.String())
	}

	// The real `init-redirect`, twice: the second run must not add a rule.
	for i := 1; i <= 2; i++ {
		out, err := inPod(t, pod, bin, "init-redirect", "--port", strconv.Itoa(appPort), "--to", strconv.Itoa(proxyPort))
		if err != nil {
			t.Fatalf("init-redirect #%d: %v\n%s", i, err, out)
		}
		if !strings.Contains(out, `"msg":"redirect installed"`) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("init-redirect #%d logged %q, want one JSON line", i, out)
		}
	}
	if n := redirectRules(t, pod); n != 1 {
		t.Fatalf("%d redirect rules in the pod after two init-redirect runs, want exactly 1", n)
	}

	t.Run("outside caller lands on the proxy and gets 401", func(t *testing.T) {
		req := newRequest(t, http.MethodPost, podURL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize"}`))
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Content-Type", "application/json")
		var body struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if code := getJSON(t, fromClient, req, &body); code != http.StatusUnauthorized || body.Error.Code != "unauthenticated" {
			t.Fatalf("POST %s/mcp from outside: %d %+v, want 401 unauthenticated from the proxy", podURL, code, body)
		}
	})

	t.Run("outside caller over IPv6 lands on the proxy and gets 401", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, podURL6+"/mcp", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := fromClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET %s/mcp from outside over IPv6: %d, want 401 from the proxy", podURL6, resp.StatusCode)
		}
	})

	t.Run("outside caller naming an unexpected host gets 421", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, podURL+"/public/hello", nil)
		req.Host = "evil.example.com"
		resp, err := fromClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Fatalf("GET %s/public/hello with Host evil.example.com: %d, want 421 from the proxy", podURL, resp.StatusCode)
		}
	})

	t.Run("other ports are not redirected", func(t *testing.T) {
		var seen appSeen
		url := fmt.Sprintf("http://%s:%d/mcp", podAddr, otherPort)
		if code := getJSON(t, fromClient, newRequest(t, http.MethodGet, url, nil), &seen); code != http.StatusOK || !seen.App || seen.ForwardedFor != "" {
			t.Fatalf("GET %s from outside: %d %+v, want the app directly", url, code, seen)
		}
	})

	t.Run("proxy reaches the app on loopback", func(t *testing.T) {
		var seen appSeen
		code := getJSON(t, fromClient, newRequest(t, http.MethodGet, podURL+"/public/hello", nil), &seen)
		if code != http.StatusOK || !seen.App || seen.Path != "/public/hello" {
			t.Fatalf("public path through the proxy: %d %+v, want the app's answer", code, seen)
		}
		// The app saw the proxy (forwarding headers naming the client,
		// connection from 127.0.0.1), not the client directly, and the
		// proxy's own connection was not redirected back to itself.
		if seen.RemoteIP != "127.0.0.1" || !strings.Contains(seen.ForwardedFor, clientAddr) {
			t.Fatalf("app saw remote %s, X-Forwarded-For %q; want 127.0.0.1 forwarding for %s", seen.RemoteIP, seen.ForwardedFor, clientAddr)
		}
	})

	t.Run("loopback inside the pod is not redirected", func(t *testing.T) {
		var seen appSeen
		code := getJSON(t, fromPod, newRequest(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/mcp", appPort), nil), &seen)
		if code != http.StatusOK || !seen.App || seen.ForwardedFor != "" {
			t.Fatalf("127.0.0.1:%d from inside the pod: %d %+v, want the app directly", appPort, code, seen)
		}
	})

	t.Run("kubelet probe replayed on the admin port", func(t *testing.T) {
		url := fmt.Sprintf("http://127.0.0.1:%d%s", adminPort, probe.Path("app", probe.Readiness))
		resp, err := fromPod.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %q, want 200 from the replayed app probe", url, resp.StatusCode, body)
		}
	})

	t.Run("remove restores direct access", func(t *testing.T) {
		if out, err := inPod(t, pod, bin, "init-redirect", "--remove"); err != nil {
			t.Fatalf("init-redirect --remove: %v\n%s", err, out)
		}
		if n := redirectRules(t, pod); n != 0 {
			t.Fatalf("%d rules after --remove, want 0", n)
		}
		var seen appSeen
		if code := getJSON(t, fromClient, newRequest(t, http.MethodGet, podURL+"/mcp", nil), &seen); code != http.StatusOK || !seen.App || seen.ForwardedFor != "" {
			t.Fatalf("after --remove: %d %+v, want the app directly", code, seen)
		}
	})
}
