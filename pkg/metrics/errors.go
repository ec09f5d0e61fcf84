package metrics

import (
	"errors"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

func isNotFound(err error) bool { return errors.Is(err, session.ErrNotFound) }
func isLocked(err error) bool   { return errors.Is(err, session.ErrLocked) }
