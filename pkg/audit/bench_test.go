package audit_test

import (
	"io"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/metrics"
)

// BenchmarkRecord measures the per-request cost of auditing with the real
// counter: metric only (audit.enabled false), a line without arguments (the
// default when enabled), and a line with redacted arguments.
func BenchmarkRecord(b *testing.B) {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeDuration = zapcore.StringDurationEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(io.Discard), zapcore.InfoLevel)).Named("audit")
	code := -32602
	e := audit.Entry{
		Time: time.Now(), RequestID: "3f2c7a9e-1b4d-4e8f-9a6b-2c1d0e9f8a7b", SessionID: "sess-1",
		Subject: "248289761001", Email: "ada@example.com", ClientID: "claude-desktop",
		Method: "tools/call", Name: "search_docs", Decision: audit.DecisionDenied, Rule: "admins-only",
		ErrorCode: &code, Duration: 1500 * time.Microsecond,
		Arguments: map[string]any{
			"query": "rotate keys", "limit": 10.0, "api_key": "sk-123",
			"filters": map[string]any{"repo": "infra", "labels": []any{"a", "b"}},
		},
	}
	keys := []string{"password", "secret", "token", "api_key", "apikey", "authorization", "credential", "private_key"}
	for _, bc := range []struct {
		name string
		s    audit.Settings
	}{
		{"enabled=false", audit.Settings{RedactKeys: keys}},
		{"enabled=true/arguments=false", audit.Settings{Enabled: true, RedactKeys: keys}},
		{"enabled=true/arguments=true", audit.Settings{Enabled: true, Arguments: true, RedactKeys: keys}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := audit.New(audit.Options{Logger: log, Counter: metrics.New("bench").MCPRequests(), Settings: bc.s})
			b.ReportAllocs()
			for b.Loop() {
				l.Record(e)
			}
		})
	}
}
