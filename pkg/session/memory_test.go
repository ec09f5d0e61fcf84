package session_test

import (
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session/sessiontest"
)

func TestMemoryConformance(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) session.Store {
		m := session.NewMemory(session.MemoryOptions{})
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}
