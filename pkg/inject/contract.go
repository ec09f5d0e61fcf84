package inject

import (
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

// The sidecar settings the injector writes into the proxy container, named
// by their Go fields: their flags, variables and keys come from pkg/config,
// so a rename there reaches every injected pod (and the contract test,
// test/contract, loads the result with the sidecar's own loader).

func listenSetting() config.Field {
	return config.FieldOf(func(c *config.Config) any { return &c.Listen })
}

// advertiseSetting is where other replicas reach this sidecar to forward
// the MCP sessions it owns; a bare ":port" takes the host from the pod IP.
func advertiseSetting() config.Field {
	return config.FieldOf(func(c *config.Config) any { return &c.MCPSession.AdvertiseAddress })
}

func adminListenSetting() config.Field {
	return config.FieldOf(func(c *config.Config) any { return &c.AdminListen })
}

func upstreamSetting() config.Field {
	return config.FieldOf(func(c *config.Config) any { return &c.Upstream })
}

func logLevelSetting() config.Field {
	return config.FieldOf(func(c *config.Config) any { return &c.LogLevel })
}

func memoryLimitSetting() config.Field {
	return config.FieldOf(func(c *config.Config) any { return &c.MemoryLimit })
}

func allowedHostsSetting() config.Field {
	return config.FieldOf(func(c *config.Config) any { return &c.AllowedHosts })
}

func externalURLSetting() config.Field {
	return config.FieldOf(func(c *config.Config) any { return &c.ExternalURL })
}
