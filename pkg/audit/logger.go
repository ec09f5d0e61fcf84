package audit

import (
	"net/url"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Message is the message of every audit line; with the logger name
// ("audit") it is what operators filter on.
const Message = "mcp request"

// methodToolsCall is the one method whose Name is a tool name (for the
// metric's tool label); spelled here so the package needs no project import.
const methodToolsCall = "tools/call"

// maxFieldBytes bounds the request-controlled strings of a line (method,
// name): they come from the client's body, and a line must stay a line.
const maxFieldBytes = 1024

// Counter counts audited requests; pkg/metrics implements it (the
// mcp_oidc_proxy_mcp_requests_total counter). It is declared here, where it
// is used, so the audit package does not import Prometheus. tool is the
// tool name of a tools/call and "" for every other method; the implementation
// decides whether (and how boundedly) it becomes a label.
type Counter interface {
	Count(method, decision, tool string)
}

// Settings are the reloadable audit settings (audit.enabled,
// audit.arguments, audit.redact_keys).
type Settings struct {
	// Enabled writes a line per request. When false, Record only counts
	// the metric.
	Enabled bool
	// Arguments adds the request's arguments to the line, redacted.
	Arguments bool
	// RedactKeys are argument key names whose values are replaced with
	// "[REDACTED]" (the matching rule is redactor's).
	RedactKeys []string
}

// Options configure a Logger.
type Options struct {
	// Logger is the dedicated audit logger (the coordinator passes the
	// base logger .Named("audit")); nil discards lines.
	Logger *zap.Logger
	// Counter counts every recorded request; nil counts nothing.
	Counter Counter
	// Settings are the initial settings; Set replaces them.
	Settings Settings
}

// Logger writes the audit trail. It is safe for concurrent use; Set swaps
// the settings atomically, so a reload never tears a line.
type Logger struct {
	log     *zap.Logger
	counter Counter
	cur     atomic.Pointer[settings]
}

// settings are Settings prepared for the hot path: redact keys normalised
// once per reload, not once per line.
type settings struct {
	enabled   bool
	arguments bool
	redactor  redactor
}

// New returns a Logger with opts' settings.
func New(opts Options) *Logger {
	l := &Logger{log: opts.Logger, counter: opts.Counter}
	if l.log == nil {
		l.log = zap.NewNop()
	}
	l.Set(opts.Settings)
	return l
}

// Set replaces the settings (hot reload). Requests recorded after Set
// returns use the new settings.
func (l *Logger) Set(s Settings) {
	l.cur.Store(&settings{enabled: s.Enabled, arguments: s.Arguments, redactor: newRedactor(s.RedactKeys)})
}

// Record audits one JSON-RPC request: it always counts the metric, and
// writes one Info line "mcp request" when the audit trail is enabled. The
// line's time is e.Time, when the request started, not when it is written.
// e.Arguments is read, never modified (the policy shares it).
func (l *Logger) Record(e Entry) {
	if l.counter != nil {
		tool := ""
		if e.Method == methodToolsCall {
			tool = e.Name
		}
		l.counter.Count(e.Method, e.Decision, tool)
	}
	st := l.cur.Load()
	if !st.enabled {
		return
	}
	ce := l.log.Check(zapcore.InfoLevel, Message)
	if ce == nil {
		return
	}
	if !e.Time.IsZero() {
		ce.Time = e.Time
	}
	fields := make([]zap.Field, 0, 13)
	fields = append(fields, zap.String("request_id", e.RequestID))
	if e.SessionID != "" {
		fields = append(fields, zap.String("mcp_session_id", e.SessionID))
	}
	fields = append(fields, zap.String("sub", e.Subject), zap.String("email", e.Email))
	if e.ClientID != "" {
		fields = append(fields, zap.String("client_id", e.ClientID))
	}
	fields = append(fields, zap.String("method", clip(e.Method)))
	if e.Name != "" {
		fields = append(fields, zap.String("name", clip(redactURI(e.Name))))
	}
	fields = append(fields, zap.String("decision", e.Decision))
	if e.Rule != "" {
		fields = append(fields, zap.String("rule", e.Rule))
	}
	if e.ErrorCode != nil {
		fields = append(fields, zap.Int("error_code", *e.ErrorCode))
	}
	fields = append(fields, zap.Duration("duration", e.Duration))
	if st.arguments && e.Arguments != nil {
		fields = append(fields, zap.Any("arguments", st.redactor.redact(e.Arguments)))
	}
	ce.Write(fields...)
}

// clip bounds a request-controlled string, cutting on a UTF-8 boundary.
func clip(s string) string {
	if len(s) <= maxFieldBytes {
		return s
	}
	return truncateUTF8(s, maxFieldBytes) + truncatedSuffix
}

// redactURI hides the password of a URI's userinfo (a resource URI such as
// postgres://app:secret@db/x): no secret is ever logged. Anything else is
// returned as is.
func redactURI(name string) string {
	if !strings.Contains(name, "@") || !strings.Contains(name, "://") {
		return name
	}
	u, err := url.Parse(name)
	if err != nil {
		// Unparsable but it has userinfo-looking parts: keep the scheme
		// and drop the rest rather than risk a password.
		scheme, _, _ := strings.Cut(name, "://")
		return clip(scheme) + "://" + redacted
	}
	if _, has := u.User.Password(); !has {
		return name
	}
	return u.Redacted()
}
