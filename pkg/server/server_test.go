package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and returns its
// pool and file paths.
func writeCert(t *testing.T, dir string) (*x509.CertPool, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "mcp-oidc-proxy test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, certFile, keyFile
}

// bypassConfig is a valid configuration that needs no OIDC provider.
func bypassConfig(t *testing.T, upstream string, extra ...string) config.Config {
	t.Helper()
	args := append([]string{"--upstream", upstream, "--auth-mode", "bypass", "--allow-insecure-bypass",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:1", "--shutdown-grace", "5s"}, extra...)
	loaded, err := config.Load(config.Source{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	return loaded.Config
}

func TestServeTLSOnTheServingPortAndShutDownCleanly(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"user": r.Header.Get("X-Forwarded-User"), "proto": r.Header.Get("X-Forwarded-Proto")})
	}))
	defer upstream.Close()
	pool, certFile, keyFile := writeCert(t, t.TempDir())
	cfg := bypassConfig(t, upstream.URL, "--tls-cert-file", certFile, "--tls-key-file", keyFile)

	srv, err := New(context.Background(), cfg, Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adminLn) }()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + ln.Addr().String() + "/anything")
	if err != nil {
		t.Fatalf("TLS request through the proxy: %v", err)
	}
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || body["user"] != "bypass-user" || body["proto"] != "https" {
		t.Fatalf("status %d body %v, want 200 with bypass-user over https", resp.StatusCode, body)
	}
	if resp.TLS == nil {
		t.Fatal("response did not come over TLS")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after shutdown, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
}

func TestAdminEndpoints(t *testing.T) {
	upstream := httptest.NewServer(http.NotFoundHandler())
	cfg := bypassConfig(t, upstream.URL)
	srv, err := New(context.Background(), cfg, Options{Version: "v-test", Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	admin := srv.AdminHandler()

	get := func(path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var m map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Code, m
	}
	code, h := get("/healthz")
	if code != http.StatusOK || h["status"] != "healthy" || h["version"] != "v-test" || h["uptime"] == nil {
		t.Fatalf("healthz = %d %v", code, h)
	}
	if up := h["upstream"].(map[string]any)["reachable"]; up != true {
		t.Fatalf("upstream reachable = %v, want true", up)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("readyz in bypass mode = %d, want 200 (no discovery needed)", code)
	}

	upstream.Close()
	// The health check caches for a second; a fresh server sees the
	// closed upstream at once.
	srv2, _ := New(context.Background(), cfg, Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
	rec := httptest.NewRecorder()
	srv2.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var m map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	if rec.Code != http.StatusOK || m["upstream"].(map[string]any)["reachable"] != false {
		t.Fatalf("healthz with upstream down = %d %v, want 200 with reachable=false", rec.Code, m)
	}

	// Health and metrics are not served on the protected listener: there
	// they are ordinary paths forwarded (here to a dead upstream).
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code == http.StatusOK {
		t.Fatalf("/metrics answered 200 on the protected listener")
	}
}

// TestAdminPprof: the runtime profiles are served on the admin listener only
// when the pprof setting asks for them, and never on the protected one.
func TestAdminPprof(t *testing.T) {
	upstream := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(upstream.Close)
	for _, tc := range []struct {
		name  string
		pprof bool
		want  int
	}{
		{"off by default", false, http.StatusNotFound},
		{"on", true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bypassConfig(t, upstream.URL)
			cfg.Pprof = tc.pprof
			srv, err := New(context.Background(), cfg, Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
			if err != nil {
				t.Fatal(err)
			}
			for path, looksLike := range map[string]string{
				"/debug/pprof/": "goroutine", "/debug/pprof/heap?debug=1": "heap profile", "/debug/pprof/goroutine?debug=1": "goroutine profile",
			} {
				rec := httptest.NewRecorder()
				srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				if rec.Code != tc.want {
					t.Errorf("admin %s = %d, want %d", path, rec.Code, tc.want)
				}
				if tc.pprof && !strings.Contains(rec.Body.String(), looksLike) {
					t.Errorf("admin %s does not look like a profile: %.200s", path, rec.Body.String())
				}
				rec = httptest.NewRecorder()
				srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				if rec.Code == http.StatusOK {
					t.Errorf("protected listener %s = 200; profiles belong to the admin listener only", path)
				}
			}
		})
	}
}
