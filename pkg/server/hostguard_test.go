package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
)

// hostFacade is a façade proxy WITHOUT external_url, signing with a key the
// test also holds, so the test can mint genuine access tokens for any host.
type hostFacade struct {
	srv     *Server
	signer  jose.Signer
	reached atomic.Int32
}

func newHostFacade(t *testing.T, extra ...string) *hostFacade {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostFacade{}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.reached.Add(1) }))
	t.Cleanup(upstream.Close)
	args := append([]string{
		"--upstream", upstream.URL, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:1",
		"--oidc-discovery-url", "http://127.0.0.1:9/", "--oidc-client-id", "proxy",
		"--session-cookie-secret", strings.Repeat("k", 32),
		"--oauth-signing-keys", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})),
	}, extra...)
	loaded, err := config.Load(config.Source{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	h.srv, err = New(context.Background(), loaded.Config, Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: key, Algorithm: string(jose.ES256), KeyID: h.srv.mcp.oauth.Signer().KID()}
	h.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jwk}, (&jose.SignerOptions{}).WithType(oauth.AccessTokenType))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// token is a genuine façade access token for base (iss) and its /mcp (aud).
func (h *hostFacade) token(t *testing.T, base string) string {
	t.Helper()
	now := time.Now()
	raw, err := jwt.Signed(h.signer).Claims(map[string]any{
		"iss": base, "aud": base + "/mcp", "sub": "alice", "jti": fmt.Sprintf("jti-%d", now.UnixNano()),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (h *hostFacade) do(host, bearerToken string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "http://"+host+"/mcp", strings.NewReader(`{}`))
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	if bearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+bearerToken)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// Hole 3: without external_url, bearer requests with invented Host headers
// must not fill per-host state so that the real host's genuine tokens are
// refused afterwards.
func TestInventedHostsCannotPoisonBearerValidation(t *testing.T) {
	h := newHostFacade(t)
	const real = "127.0.0.1:15080"
	invented := 0
	for i := range 40 {
		host := fmt.Sprintf("invented-%d.example.com", i)
		if rec := h.do(host, h.token(t, "http://"+host)); rec.Code < 400 {
			invented++
		}
	}
	before := h.reached.Load()
	rec := h.do(real, h.token(t, "http://"+real))
	if rec.Code != http.StatusOK || h.reached.Load() != before+1 {
		t.Fatalf("genuine token for the real host after 40 invented hosts: status %d (%s), WWW-Authenticate %q; want 200 from the upstream",
			rec.Code, strings.TrimSpace(rec.Body.String()), rec.Header().Get("WWW-Authenticate"))
	}
	if invented != 0 || before != 0 {
		t.Fatalf("%d requests with invented hosts were accepted (%d reached the upstream); the operator expects none of those hosts", invented, before)
	}
}

// Hole 3 (DNS rebinding, MCP transport spec): a request whose Host or
// Origin the operator does not expect is refused on every route of the
// protected listener, even with valid credentials, and never reaches the
// MCP server.
func TestUnexpectedHostOrOriginIsRefusedEverywhere(t *testing.T) {
	const evil = "evil.example.com"
	paths := []string{"/mcp", "/oauth2/logout", "/oauth2/register", "/.well-known/oauth-protected-resource/mcp",
		"/.well-known/oauth-authorization-server", "/public/page", "/api/v1/session"}
	for _, tc := range []struct {
		name   string
		extra  []string
		host   string // the request's Host
		base   string // what the token is minted for
		origin string
		want   int
		// open: the OAuth endpoints browser-based MCP clients call from
		// any origin (CORS *) answer as usual for an expected host.
		open bool
	}{
		{"rebinding browser, no external_url", nil, evil, "http://" + evil, "http://" + evil, http.StatusMisdirectedRequest, false},
		{"unexpected host without origin, no external_url", nil, evil, "http://" + evil, "", http.StatusMisdirectedRequest, false},
		{"rebinding browser, external_url", []string{"--external-url", "https://mcp.example.com"}, evil, "https://mcp.example.com", "http://" + evil, http.StatusMisdirectedRequest, false},
		{"expected host, foreign origin", nil, "127.0.0.1:15080", "http://127.0.0.1:15080", "http://" + evil, http.StatusForbidden, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostFacade(t, append([]string{"--public-paths", "/public/*"}, tc.extra...)...)
			for _, p := range paths {
				method := http.MethodPost
				if strings.HasPrefix(p, "/.well-known/") {
					method = http.MethodGet
				}
				req := httptest.NewRequest(method, "http://"+tc.host+p, strings.NewReader(`{}`))
				req.Host = tc.host
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+h.token(t, tc.base))
				if tc.origin != "" {
					req.Header.Set("Origin", tc.origin)
				}
				rec := httptest.NewRecorder()
				h.srv.Handler().ServeHTTP(rec, req)
				if tc.open && (strings.HasPrefix(p, "/.well-known/") || p == "/oauth2/register") {
					if rec.Code == http.StatusForbidden || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
						t.Errorf("open endpoint %s from a foreign origin: %d, CORS %q; want its own answer with CORS *", p, rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
					}
					continue
				}
				if rec.Code != tc.want {
					t.Errorf("POST %s with Host %s, Origin %q: status %d (%s), want %d", p, tc.host, tc.origin, rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
				}
			}
			if n := h.reached.Load(); n != 0 {
				t.Errorf("%d refused requests reached the MCP server", n)
			}
		})
	}
}

// Even hosts the operator allows (a wildcard) share one validator: 40
// distinct allowed hosts, each with its own genuine token, leave the first
// host's tokens accepted, and a token for one host never opens another.
func TestManyAllowedHostsShareOneValidator(t *testing.T) {
	h := newHostFacade(t, "--allowed-hosts", "*.tenants.example.com")
	for i := range 40 {
		host := fmt.Sprintf("t%d.tenants.example.com", i)
		if rec := h.do(host, h.token(t, "http://"+host)); rec.Code != http.StatusOK {
			t.Fatalf("allowed host %s: status %d", host, rec.Code)
		}
	}
	if rec := h.do("t0.tenants.example.com", h.token(t, "http://t0.tenants.example.com")); rec.Code != http.StatusOK {
		t.Fatalf("first host after 40 others: status %d", rec.Code)
	}
	rec := h.do("t1.tenants.example.com", h.token(t, "http://t0.tenants.example.com"))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("t0's token at t1: status %d, WWW-Authenticate %q; want 401 invalid_token", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	if n := h.reached.Load(); n != 41 {
		t.Fatalf("upstream reached %d times, want 41", n)
	}
}

// Without external_url the operator is told at start-up that production
// needs it; with it, not.
func TestWarnsWithoutExternalURL(t *testing.T) {
	for _, tc := range []struct {
		extra []string
		warn  bool
	}{{nil, true}, {[]string{"--external-url", "https://mcp.example.com"}, false}} {
		core, logs := observer.New(zap.WarnLevel)
		cfg := bypassConfig(t, "http://127.0.0.1:9", tc.extra...)
		if _, err := New(context.Background(), cfg, Options{Logger: zap.New(core), Level: zap.NewAtomicLevel()}); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range logs.All() {
			if strings.Contains(e.Message, "external_url is not set") && strings.Contains(e.Message, "production needs external_url") {
				n++
			}
		}
		if (n == 1) != tc.warn || n > 1 {
			t.Errorf("args %v: %d start-up warnings about external_url, want warn=%v", tc.extra, n, tc.warn)
		}
	}
}
