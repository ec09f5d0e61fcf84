package config

import (
	"slices"
	"testing"
	"time"
)

func TestValidateMCPSession(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*MCPSessionConfig)
		want   []string
	}{
		{name: "defaults"},
		{name: "host and port", mutate: func(c *MCPSessionConfig) { c.AdvertiseAddress = "198.18.0.7:8080" }},
		{name: "IPv6", mutate: func(c *MCPSessionConfig) { c.AdvertiseAddress = "[2001:db8::7]:8080" }},
		{name: "bare port without POD_IP", mutate: func(c *MCPSessionConfig) { c.AdvertiseAddress = ":8080" },
			want: []string{"mcp_session.advertise_address"}},
		{name: "no port", mutate: func(c *MCPSessionConfig) { c.AdvertiseAddress = "198.18.0.7" },
			want: []string{"mcp_session.advertise_address"}},
		{name: "bad port", mutate: func(c *MCPSessionConfig) { c.AdvertiseAddress = "h:0" },
			want: []string{"mcp_session.advertise_address"}},
		{name: "zero durations", mutate: func(c *MCPSessionConfig) { c.TTL, c.HopTimeout = 0, -time.Second },
			want: []string{"mcp_session.hop_timeout", "mcp_session.ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validOIDC()
			if tt.mutate != nil {
				tt.mutate(&c.MCPSession)
			}
			if got := errorPaths(t, c.Validate()); !slices.Equal(got, tt.want) {
				t.Fatalf("error paths %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAdvertiseAddressFromPodIP: the injector's bare ":port" takes the
// host from the downward API's pod IP, IPv6 bracketed.
func TestAdvertiseAddressFromPodIP(t *testing.T) {
	for _, tc := range []struct{ podIP, want string }{
		{"198.18.0.7", "198.18.0.7:15080"},
		{"2001:db8::7", "[2001:db8::7]:15080"},
		{"", ":15080"},
	} {
		env := []string{}
		if tc.podIP != "" {
			env = append(env, PodIPEnv+"="+tc.podIP)
		}
		loaded, err := Load(Source{Args: []string{"--mcp-session-advertise-address", ":15080"}, Env: env})
		if err != nil {
			t.Fatal(err)
		}
		if got := loaded.Config.MCPSession.AdvertiseAddress; got != tc.want {
			t.Errorf("POD_IP %q: advertise address %q, want %q", tc.podIP, got, tc.want)
		}
	}
}
