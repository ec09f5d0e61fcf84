package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestRulesFromParsesRequiredClaims(t *testing.T) {
	cfg := bypassConfig(t, "http://127.0.0.1:1", "--authz-required-claims", "tenant=acme, roles = mcp")
	got := rulesFrom(cfg).RequiredClaims
	if len(got) != 2 || got["tenant"] != "acme" || got["roles"] != "mcp" {
		t.Fatalf("RequiredClaims = %v, want tenant=acme and roles=mcp", got)
	}
}

// One request ID end to end: a well-formed incoming X-Request-ID is
// propagated (a malformed one replaced), the upstream receives it, and the
// client gets exactly one X-Request-ID back even when the upstream echoes it
// or sends its own.
func TestRequestIDPropagatedOnceEndToEnd(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("X-Request-ID", r.Header.Get("X-Request-ID"))
		case "/own":
			w.Header().Set("X-Request-ID", "upstream-invented")
		}
		_, _ = io.WriteString(w, r.Header.Get("X-Request-ID"))
	}))
	defer upstream.Close()
	srv, err := New(context.Background(), bypassConfig(t, upstream.URL, "--allowed-hosts", "example.com"), Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, incoming string
		wantID               string // "" = a generated one
	}{
		{"propagated, upstream echoes", "/echo", "req-123", "req-123"},
		{"propagated, upstream invents its own", "/own", "req-456", "req-456"},
		{"generated, upstream silent", "/silent", "", ""},
		{"malformed replaced", "/echo", "bad id\twith tab", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.incoming != "" {
				req.Header.Set("X-Request-ID", tt.incoming)
			}
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)
			got := rec.Result().Header.Values("X-Request-ID")
			if len(got) != 1 {
				t.Fatalf("response X-Request-ID values %q, want exactly one", got)
			}
			if sent := rec.Body.String(); sent != got[0] {
				t.Errorf("upstream received %q, client was told %q", sent, got[0])
			}
			if tt.wantID != "" && got[0] != tt.wantID {
				t.Errorf("request ID %q, want the incoming %q", got[0], tt.wantID)
			}
			if tt.wantID == "" && (got[0] == "" || got[0] == tt.incoming) {
				t.Errorf("request ID %q, want a generated one", got[0])
			}
		})
	}
}
