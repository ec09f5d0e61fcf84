// Command idlerss measures the sidecar binary's idle resident memory: it
// starts a local OpenID provider and upstream on loopback, runs the given
// binary with the minimal flags a user would pass (optionally with TLS on the
// protected listener, a self-signed pair written to a temporary directory),
// waits until /readyz answers 200, lets the process settle, and prints VmRSS
// from /proc/<pid>/status.
//
//	go run ./hack/idlerss -bin /tmp/mcp-oidc-proxy [-tls] [-settle 2s] [-samples 5]
//
// Each sample is taken -settle apart; the last one is the reading (the
// process only gets smaller or stays put once it is idle). Linux only.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "idlerss:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "", "the sidecar binary to measure")
	withTLS := flag.Bool("tls", false, "serve the protected listener over TLS (a self-signed pair)")
	settle := flag.Duration("settle", 2*time.Second, "time between samples once ready")
	samples := flag.Int("samples", 5, "number of VmRSS samples")
	flag.Parse()
	if *bin == "" {
		return errors.New("-bin is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	idpLn, err := stack.Listen()
	if err != nil {
		return err
	}
	idp, err := oidcprovider.New(idpLn, oidcprovider.Options{})
	if err != nil {
		return fmt.Errorf("OpenID provider: %w", err)
	}
	go func() { _ = idp.Serve() }()
	defer idp.Close()
	upLn, err := stack.Listen()
	if err != nil {
		return err
	}
	upURL, stopUp := stack.Serve(upLn, stack.UpstreamMux())
	defer stopUp()

	listen, err := freeAddr()
	if err != nil {
		return err
	}
	admin, err := freeAddr()
	if err != nil {
		return err
	}
	args := append(stack.Flags(listen, admin, upURL, "http://"+idpLn.Addr().String()), "--log-level", "warn")
	if *withTLS {
		dir, err := os.MkdirTemp("", "idlerss")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cert, key, err := writePair(dir)
		if err != nil {
			return err
		}
		args = append(args, "--tls-cert-file", cert, "--tls-key-file", key)
	}
	cmd := exec.CommandContext(ctx, *bin, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", *bin, err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if err := waitReady(ctx, "http://"+admin+"/readyz"); err != nil {
		return err
	}
	var rss string
	for i := 0; i < *samples; i++ {
		time.Sleep(*settle) // a measurement interval, not synchronisation
		if rss, err = vmRSS(cmd.Process.Pid); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "sample %d: VmRSS %s\n", i+1, rss)
	}
	fmt.Printf("VmRSS %s\n", rss)
	return nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer 200 within 30s", url)
}

func vmRSS(pid int) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("no VmRSS in /proc status")
}

// writePair writes a self-signed ECDSA pair for 127.0.0.1.
func writePair(dir string) (string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "idlerss"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	cert, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", err
	}
	return cert, keyFile, nil
}
