package bearer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// validatorFunc adapts a function to bearer.Validator.
type validatorFunc func(ctx context.Context, raw string) (*bearer.Token, error)

func (f validatorFunc) Validate(ctx context.Context, raw string, _ bearer.Expectation) (*bearer.Token, error) {
	return f(ctx, raw)
}

// Validation failures are logged with the request ID of the request
// (issue 2), so an operator can find the line a client's error refers to.
func TestValidationLogsCarryTheRequestID(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		msg    string
		status int
	}{
		{"validation unavailable", fmt.Errorf("jwks: %w", bearer.ErrUnavailable), "bearer token validation unavailable", http.StatusServiceUnavailable},
		{"token rejected", fmt.Errorf("expired: %w", bearer.ErrInvalidToken), "bearer token rejected", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			rs := bearer.NewResourceServer(bearer.ResourceOptions{
				Validator:           validatorFunc(func(context.Context, string) (*bearer.Token, error) { return nil, tt.err }),
				ResourceMetadataURL: func(*http.Request) string { return "https://mcp.example.com" + metadataPath },
				Logger:              zap.New(core),
			})
			h := rs.Wrap(http.NotFoundHandler(), http.NotFoundHandler())
			req := mcpRequest("Bearer some.token.value")
			req = req.WithContext(requestid.NewContext(req.Context(), "req-bearer-1"))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			lines := logs.FilterMessage(tt.msg).All()
			if len(lines) != 1 {
				t.Fatalf("%d %q lines; all: %v", len(lines), tt.msg, logs.All())
			}
			if got := lines[0].ContextMap()["request_id"]; got != "req-bearer-1" {
				t.Errorf("request_id = %v, want req-bearer-1", got)
			}
		})
	}
}
