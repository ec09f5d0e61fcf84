package redirect_test

import (
	"bytes"
	"os"
	"runtime"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/redirect"
)

// newNetns creates a private network namespace and returns a descriptor for
// it. The namespace is entered by a locked thread that is never unlocked, so
// the runtime discards that thread instead of reusing it; nothing else in
// the process (or on the host) changes namespace.
func newNetns(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (CAP_NET_ADMIN) to create a network namespace; CI runs it as root")
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		ch <- result{fd: fd, err: err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("creating a network namespace: %v", r.err)
	}
	t.Cleanup(func() { _ = unix.Close(r.fd) })
	return r.fd
}

// installedRules reads back every rule of the proxy's table.
func installedRules(t *testing.T, conn *nftables.Conn) []*nftables.Rule {
	t.Helper()
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var found *nftables.Table
	for _, tb := range tables {
		if tb.Name == redirect.TableName {
			found = tb
		}
	}
	if found == nil {
		return nil
	}
	rules, err := conn.GetRules(found, &nftables.Chain{Name: redirect.ChainName, Table: found})
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// ports extracts the matched destination port and the redirect target from
// a rule read back from the kernel.
func ports(r *nftables.Rule) (port, to []byte, redir bool) {
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Cmp:
			if len(e.Data) == 2 {
				port = e.Data
			}
		case *expr.Immediate:
			to = e.Data
		case *expr.Redir:
			redir = true
		}
	}
	return port, to, redir
}

func TestInstallInARealNamespaceIsIdempotentAndRemovable(t *testing.T) {
	fd := newNetns(t)
	conn, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}

	if err := redirect.Remove(conn); err != nil {
		t.Fatalf("Remove with no table: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := redirect.Install(conn, redirect.Rule{Port: 8080, To: 15080}); err != nil {
			t.Fatalf("Install #%d: %v", i+1, err)
		}
	}
	rules := installedRules(t, conn)
	if len(rules) != 1 {
		t.Fatalf("%d rules after installing twice, want 1", len(rules))
	}
	port, to, redir := ports(rules[0])
	if !bytes.Equal(port, []byte{0x1f, 0x90}) || !bytes.Equal(to, []byte{0x3a, 0xe8}) || !redir {
		t.Fatalf("kernel rule matches port %x, redirects to %x (redir %v); want 1f90 -> 3ae8", port, to, redir)
	}

	// Installing a different rule replaces the old one.
	if err := redirect.Install(conn, redirect.Rule{Port: 9090, To: 15080}); err != nil {
		t.Fatal(err)
	}
	rules = installedRules(t, conn)
	if len(rules) != 1 {
		t.Fatalf("%d rules after replacing, want 1", len(rules))
	}
	if port, _, _ := ports(rules[0]); !bytes.Equal(port, []byte{0x23, 0x82}) {
		t.Fatalf("replaced rule matches port %x, want 2382 (9090)", port)
	}

	if err := redirect.Remove(conn); err != nil {
		t.Fatal(err)
	}
	if rules := installedRules(t, conn); len(rules) != 0 {
		t.Fatalf("%d rules after Remove, want none", len(rules))
	}
}
