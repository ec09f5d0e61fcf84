package cluster

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ingress stands for what the README's EXTERNAL_URL names, the load
// balancer in front of the Service: it listens on the host's loopback and
// forwards each TCP connection to the Service's ClusterIP, where kube-proxy
// picks a pod. Loopback, because MCP clients (the Go SDK among them) accept
// a plain http:// authorization server only there; elsewhere OAuth needs
// TLS, which a real ingress terminates.
type ingress struct {
	ln     net.Listener
	target atomic.Pointer[string]

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startIngress listens on a free loopback port; connections are refused
// until setTarget names the Service.
func startIngress(t *testing.T) *ingress {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &ingress{ln: ln, conns: map[net.Conn]struct{}{}}
	in.wg.Add(1)
	go in.serve()
	t.Cleanup(in.close)
	return in
}

// URL is the external URL, http://127.0.0.1:<port>.
func (in *ingress) URL() string { return "http://" + in.ln.Addr().String() }

// setTarget points the ingress at the Service's ClusterIP:port.
func (in *ingress) setTarget(addr string) { in.target.Store(&addr) }

func (in *ingress) serve() {
	defer in.wg.Done()
	for {
		c, err := in.ln.Accept()
		if err != nil {
			return
		}
		in.wg.Add(1)
		go func() {
			defer in.wg.Done()
			in.forward(c)
		}()
	}
}

func (in *ingress) track(c net.Conn, add bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if add {
		in.conns[c] = struct{}{}
	} else {
		delete(in.conns, c)
	}
}

// forward copies both ways until both directions are done; a half-close
// is passed on, so the end of a response reaches the client as it was sent.
func (in *ingress) forward(client net.Conn) {
	in.track(client, true)
	defer in.track(client, false)
	defer client.Close()
	target := in.target.Load()
	if target == nil {
		return
	}
	upstream, err := net.DialTimeout("tcp", *target, 10*time.Second)
	if err != nil {
		return
	}
	in.track(upstream, true)
	defer in.track(upstream, false)
	defer upstream.Close()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok && err == nil {
			_ = tc.CloseWrite()
			return
		}
		// A reset or error on one side is passed on as a close.
		_ = dst.Close()
		_ = src.Close()
	}
	wg.Add(2)
	go pipe(upstream, client)
	go pipe(client, upstream)
	wg.Wait()
}

func (in *ingress) close() {
	_ = in.ln.Close()
	in.mu.Lock()
	for c := range in.conns {
		_ = c.Close()
	}
	in.mu.Unlock()
	in.wg.Wait()
}
