package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// TestForwardedHeadersFromTrustedProxies goes through the whole protected
// handler: with --trusted-proxies, the upstream sees the scheme and host
// the trusted ingress received and the client chain extended by this hop's
// peer; a peer outside the list cannot choose them.
func TestForwardedHeadersFromTrustedProxies(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"for":   strings.Join(r.Header.Values("X-Forwarded-For"), ", "),
			"host":  strings.Join(r.Header.Values("X-Forwarded-Host"), ", "),
			"proto": strings.Join(r.Header.Values("X-Forwarded-Proto"), ", "),
		})
	}))
	defer upstream.Close()
	srv, err := New(context.Background(), bypassConfig(t, upstream.URL, "--trusted-proxies", "127.0.0.1/32", "--allowed-hosts", "mcp.example.com,pod.internal:15080"),
		Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	ingress := map[string]string{
		"X-Forwarded-For":   "203.0.113.7",
		"X-Forwarded-Host":  "mcp.example.com",
		"X-Forwarded-Proto": "https",
	}
	tests := []struct {
		name   string
		peer   string
		header map[string]string
		want   map[string]string
	}{
		{"trusted ingress: kept and extended", "127.0.0.1:40000", ingress,
			map[string]string{"for": "203.0.113.7, 127.0.0.1", "host": "mcp.example.com", "proto": "https"}},
		{"untrusted peer: replaced", "192.0.2.1:40000", ingress,
			map[string]string{"for": "192.0.2.1", "host": "pod.internal:15080", "proto": "http"}},
		{"trusted peer without headers: this hop's values", "127.0.0.1:40000", nil,
			map[string]string{"for": "127.0.0.1", "host": "pod.internal:15080", "proto": "http"}},
		// The host the client used in front of the trusted ingress is the
		// one checked against allowed_hosts: 421.
		{"trusted ingress, unexpected forwarded host", "127.0.0.1:40000", map[string]string{"X-Forwarded-Host": "evil.example.com"}, nil},
		// An untrusted peer's X-Forwarded-Host is ignored, for the check too.
		{"untrusted peer, forwarded host ignored", "192.0.2.1:40000", map[string]string{"X-Forwarded-Host": "evil.example.com"},
			map[string]string{"for": "192.0.2.1", "host": "pod.internal:15080", "proto": "http"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://pod.internal:15080/anything", nil)
			req.RemoteAddr = tt.peer
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)
			if tt.want == nil {
				if rec.Code != http.StatusMisdirectedRequest {
					t.Fatalf("status %d: %s; want 421", rec.Code, rec.Body)
				}
				return
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var got map[string]string
			if err := json.NewDecoder(rec.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("upstream X-Forwarded-%s = %q, want %q", k, got[k], want)
				}
			}
		})
	}
}
