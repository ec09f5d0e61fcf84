package audit

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// OwnLevel returns l writing Info and above whatever the level of the
// operational log is: an operator who quiets the log with log_level warn
// must not lose the audit trail with it. The lines still go to l's output.
func OwnLevel(l *zap.Logger) *zap.Logger {
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return infoCore{c} }))
}

// infoCore enables Info and above regardless of the wrapped core's level.
// It relies on the wrapped core's Write not checking the level again, which
// holds for zap's ioCore, the core every logger here is built from.
type infoCore struct{ zapcore.Core }

func (c infoCore) Enabled(l zapcore.Level) bool { return l >= zapcore.InfoLevel }

func (c infoCore) With(fields []zapcore.Field) zapcore.Core { return infoCore{c.Core.With(fields)} }

func (c infoCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}
