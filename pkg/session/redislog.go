package session

import (
	"context"
	"fmt"

	"go.uber.org/zap"
)

// RedisLogger adapts go-redis's internal logging (connection pool
// messages such as "connection refused") to zap, so they land in the
// structured log instead of bare stderr. go-redis only offers a
// process-wide hook (redis.SetLogger); the binary installs it once in main.
type RedisLogger struct{ Log *zap.Logger }

// Printf implements go-redis's internal.Logging. The message is formatted
// by go-redis; it contains addresses and errors, never credentials.
func (l RedisLogger) Printf(_ context.Context, format string, v ...any) {
	l.Log.Warn("redis client", zap.String("detail", fmt.Sprintf(format, v...)))
}
