package certreload_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/certreload"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// pair is a PEM certificate and key whose certificate carries serial.
type pair struct{ cert, key []byte }

func newPair(t *testing.T, serial int64) pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "certreload-test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// serial is the serial number of the certificate r serves now.
func serial(t *testing.T, r *certreload.Reloader) int64 {
	t.Helper()
	c, err := r.GetCertificate(nil)
	if err != nil || c == nil || c.Leaf == nil {
		t.Fatalf("GetCertificate = %v, %v", c, err)
	}
	return c.Leaf.SerialNumber.Int64()
}

// results records what a Reloader reports to its observer.
type results struct {
	mu   sync.Mutex
	seen []string
}

func (r *results) observe(result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, result)
}

func (r *results) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func TestNew(t *testing.T) {
	good := newPair(t, 1)
	other := newPair(t, 2)
	tests := []struct {
		name      string
		cert, key []byte // nil: the file does not exist
		wantErr   bool
	}{
		{"valid pair", good.cert, good.key, false},
		{"missing certificate", nil, good.key, true},
		{"missing key", good.cert, nil, true},
		{"key of another certificate", good.cert, other.key, true},
		{"not PEM", []byte("not a certificate"), good.key, true},
		{"empty files", []byte{}, []byte{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
			if tt.cert != nil {
				write(t, certFile, tt.cert)
			}
			if tt.key != nil {
				write(t, keyFile, tt.key)
			}
			r, err := certreload.New(certFile, keyFile, certreload.Options{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("New error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && serial(t, r) != 1 {
				t.Fatalf("serving serial %d, want 1", serial(t, r))
			}
		})
	}
	if _, err := certreload.New("", "", certreload.Options{}); err == nil {
		t.Fatal("New without files succeeded")
	}
}

// TestReload walks a sequence of file states through Reload: a valid change
// is applied, an invalid one is refused once (and not re-reported while the
// files stay the same) with the running pair kept, and a fixed pair after a
// refusal is applied.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	p1, p2, p3 := newPair(t, 1), newPair(t, 2), newPair(t, 3)
	write(t, certFile, p1.cert)
	write(t, keyFile, p1.key)
	var res results
	r, err := certreload.New(certFile, keyFile, certreload.Options{Observe: res.observe})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name       string
		cert, key  []byte // nil: leave the file as it is
		want       string
		wantSerial int64
	}{
		{"unchanged", nil, nil, "", 1},
		{"certificate of the next pair written first", p2.cert, nil, certreload.Refused, 1},
		{"still half written", nil, nil, "", 1},
		{"key written too", nil, p2.key, certreload.Applied, 2},
		{"garbage", []byte("garbage"), nil, certreload.Refused, 2},
		{"the same garbage again", []byte("garbage"), nil, "", 2},
		{"truncated", []byte{}, []byte{}, certreload.Refused, 2},
		{"the running pair back: nothing to apply", p2.cert, p2.key, "", 2},
		{"a new pair", p3.cert, p3.key, certreload.Applied, 3},
	}
	var want []string
	for _, s := range steps {
		if s.cert != nil {
			write(t, certFile, s.cert)
		}
		if s.key != nil {
			write(t, keyFile, s.key)
		}
		if got := r.Reload(); got != s.want {
			t.Fatalf("%s: Reload = %q, want %q", s.name, got, s.want)
		}
		if got := serial(t, r); got != s.wantSerial {
			t.Fatalf("%s: serving serial %d, want %d", s.name, got, s.wantSerial)
		}
		if s.want != "" {
			want = append(want, s.want)
		}
	}
	if got := res.get(); len(got) != len(want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
	for i, g := range res.get() {
		if g != want[i] {
			t.Fatalf("observed %v, want %v", res.get(), want)
		}
	}
}

// kubeSecretDir lays out a directory the way the kubelet mounts a Secret:
// the files are symlinks through ..data to a timestamped directory, and an
// update swaps ..data atomically.
type kubeSecretDir struct {
	t   *testing.T
	dir string
	n   int
}

func (k *kubeSecretDir) update(p pair) {
	k.t.Helper()
	k.n++
	ts := filepath.Join(k.dir, "..2026_11_30_"+string(rune('a'+k.n)))
	if err := os.Mkdir(ts, 0o700); err != nil {
		k.t.Fatal(err)
	}
	write(k.t, filepath.Join(ts, "tls.crt"), p.cert)
	write(k.t, filepath.Join(ts, "tls.key"), p.key)
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		k.t.Fatal(err)
	}
	if k.n == 1 {
		for _, f := range []string{"tls.crt", "tls.key"} {
			if err := os.Symlink(filepath.Join("..data", f), filepath.Join(k.dir, f)); err != nil {
				k.t.Fatal(err)
			}
		}
	}
}

// start runs r until the test ends.
func start(t *testing.T, r *certreload.Reloader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitSerial polls the served certificate until it has serial.
func waitSerial(t *testing.T, r *certreload.Reloader, want int64) {
	t.Helper()
	if !waitfor.Poll(10*time.Second, waitfor.Interval, func() bool { return serial(t, r) == want }) {
		t.Fatalf("still serving serial %d after 10s, want %d", serial(t, r), want)
	}
}

// handshakeSerial opens a TLS connection to addr and returns the serial of
// the certificate the server presented.
func handshakeSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test reads the serial, not trust
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestRunFollowsAKubernetesSecretUpdate serves TLS from a Secret-style
// mount and swaps ..data twice, once to an invalid pair: the watch (polling
// off) picks up the valid update, and the handshake after the invalid one
// still presents the last valid certificate.
func TestRunFollowsAKubernetesSecretUpdate(t *testing.T) {
	k := &kubeSecretDir{t: t, dir: t.TempDir()}
	k.update(newPair(t, 1))
	var res results
	r, err := certreload.New(filepath.Join(k.dir, "tls.crt"), filepath.Join(k.dir, "tls.key"),
		certreload.Options{Observe: res.observe, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); _ = c.Close() }()
		}
	}()
	start(t, r)
	if got := handshakeSerial(t, ln.Addr().String()); got != 1 {
		t.Fatalf("first handshake presented serial %d, want 1", got)
	}

	k.update(newPair(t, 2))
	waitSerial(t, r, 2)
	if got := handshakeSerial(t, ln.Addr().String()); got != 2 {
		t.Fatalf("handshake after the update presented serial %d, want 2", got)
	}

	bad := newPair(t, 3)
	bad.key = newPair(t, 4).key
	k.update(bad)
	if !waitfor.Poll(10*time.Second, waitfor.Interval, func() bool { return len(res.get()) >= 2 }) {
		t.Fatalf("the invalid update was not reported within 10s; observed %v", res.get())
	}
	if got := res.get(); got[0] != certreload.Applied || got[1] != certreload.Refused {
		t.Fatalf("observed %v, want [applied refused ...]", got)
	}
	if got := handshakeSerial(t, ln.Addr().String()); got != 2 {
		t.Fatalf("handshake after the invalid update presented serial %d, want 2 (kept)", got)
	}
}

// TestRunPollsWhatTheWatchCannotSee points the configured files at
// symlinks into another directory, which the watch does not cover: the poll
// still picks up the change.
func TestRunPollsWhatTheWatchCannotSee(t *testing.T) {
	real, mount := t.TempDir(), t.TempDir()
	p1 := newPair(t, 1)
	write(t, filepath.Join(real, "a.crt"), p1.cert)
	write(t, filepath.Join(real, "a.key"), p1.key)
	for _, f := range []string{"a.crt", "a.key"} {
		if err := os.Symlink(filepath.Join(real, f), filepath.Join(mount, f)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := certreload.New(filepath.Join(mount, "a.crt"), filepath.Join(mount, "a.key"),
		certreload.Options{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	p2 := newPair(t, 2)
	// Write both through temporary names and rename, so no poll sees a
	// half-written pair.
	for _, f := range []struct {
		name string
		data []byte
	}{{"a.key", p2.key}, {"a.crt", p2.cert}} {
		tmp := filepath.Join(real, "tmp")
		write(t, tmp, f.data)
		if err := os.Rename(tmp, filepath.Join(real, f.name)); err != nil {
			t.Fatal(err)
		}
	}
	waitSerial(t, r, 2)
}

// TestRunFailsWithoutTheDirectory reports a watch that cannot start.
func TestRunFailsWithoutTheDirectory(t *testing.T) {
	dir := t.TempDir()
	p := newPair(t, 1)
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(sub, "tls.crt"), p.cert)
	write(t, filepath.Join(sub, "tls.key"), p.key)
	r, err := certreload.New(filepath.Join(sub, "tls.crt"), filepath.Join(sub, "tls.key"), certreload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run without the directory returned nil")
	}
	if serial(t, r) != 1 {
		t.Fatal("the loaded pair was lost")
	}
}
