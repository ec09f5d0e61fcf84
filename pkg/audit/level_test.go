package audit_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
)

// TestOwnLevel: audit lines are written when the operational log is at
// warn, while the operational log's own Info lines are not.
func TestOwnLevel(t *testing.T) {
	var buf bytes.Buffer
	level := zap.NewAtomicLevelAt(zap.WarnLevel)
	base := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), level))
	base.Info("operational info")
	l := audit.New(audit.Options{Logger: audit.OwnLevel(base.Named("audit")), Settings: audit.Settings{Enabled: true}})
	l.Record(audit.Entry{Time: time.Now(), RequestID: "r1", Method: "tools/call", Decision: audit.DecisionDenied})
	out := buf.String()
	if strings.Contains(out, "operational info") {
		t.Errorf("the base logger wrote an Info line at level warn: %s", out)
	}
	if !strings.Contains(out, `"request_id":"r1"`) || !strings.Contains(out, `"logger":"audit"`) {
		t.Errorf("no audit line at log level warn: %q", out)
	}
}
