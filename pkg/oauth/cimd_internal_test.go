package oauth

import (
	"net/netip"
	"testing"
)

// TestPublicAddr pins the SSRF address policy for client metadata document
// fetches, including the ranges that wrap a private IPv4 address in IPv6.
func TestPublicAddr(t *testing.T) {
	tests := []struct {
		addr   string
		public bool
	}{
		{"93.184.215.14", true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"fd00::1", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"100.64.0.1", false},
		{"192.0.0.8", false},
		{"198.18.0.1", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},
		{"224.0.0.1", false},
		{"64:ff9b::a00:1", false},   // NAT64 of 10.0.0.1
		{"64:ff9b:1::a00:1", false}, // local-use NAT64
		{"2002:a00:1::1", false},    // 6to4 of 10.0.0.1
		{"2001:0:a00:1::1", false},  // Teredo
		{"100::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := publicAddr(netip.MustParseAddr(tt.addr)); got != tt.public {
				t.Fatalf("publicAddr(%s) = %v, want %v", tt.addr, got, tt.public)
			}
		})
	}
}
