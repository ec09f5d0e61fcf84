package resource_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/resource"
)

// brokenSigner cannot sign, like a key manager that lost its key.
type brokenSigner struct{}

func (brokenSigner) KID() string                         { return "broken" }
func (brokenSigner) Sign(map[string]any) (string, error) { return "", errors.New("signer down") }

// Assertion log lines carry the request ID of the request they are about
// (issue 2), also the ones written while the upstream's response is being
// committed.
func TestLogLinesCarryTheRequestID(t *testing.T) {
	tests := []struct {
		name string
		sid  string // request's Mcp-Session-Id
		wrap func(t *testing.T, log *zap.Logger) http.Handler
		msg  string
	}{
		{
			name: "assertion cannot be signed", msg: "sign identity assertion",
			wrap: func(t *testing.T, log *zap.Logger) http.Handler {
				a, err := resource.NewAsserter(brokenSigner{}, resource.AsserterOptions{
					Issuer: func(*http.Request) string { return "https://mcp.example.com" }, Audience: "mcp-server", Logger: log,
				})
				if err != nil {
					t.Fatal(err)
				}
				return a.Wrap(&upstream{})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			h := tt.wrap(t, zap.New(core))
			req := httptest.NewRequest(http.MethodPost, "/mcp?n=1", nil)
			if tt.sid != "" {
				req.Header.Set("Mcp-Session-Id", tt.sid)
			}
			req = as(req, "alice")
			req = req.WithContext(requestid.NewContext(req.Context(), "req-resource-1"))
			h.ServeHTTP(httptest.NewRecorder(), req)
			lines := logs.FilterMessage(tt.msg).All()
			if len(lines) != 1 {
				t.Fatalf("%d %q lines; all: %v", len(lines), tt.msg, logs.All())
			}
			if got := lines[0].ContextMap()["request_id"]; got != "req-resource-1" {
				t.Errorf("request_id = %v, want req-resource-1", got)
			}
		})
	}
}
