package forwarded

import "testing"

func TestValidHostForwarded(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"mcp.example.com", true},
		{"mcp.example.com:8443", true},
		{"192.0.2.1", true},
		{"192.0.2.1:80", true},
		{"[2001:db8::1]", true},
		{"[2001:db8::1]:443", true},
		{"", false},
		{":a", false},
		{":80", false},
		{"a:b:c", false},
		{"a:", false},
		{"a:0", false},
		{"a:65536", false},
		{"a:080", false},
		{"[::1", false},
		{"[mcp.example.com]", false},
		{"[192.0.2.1]:80", false},
		{"[fe80::1%25eth0]", false},
		{"evil.example/path", false},
		{"user@evil.example", false},
		{"evil.example]", false},
		{"2001:db8::1", false},
	}
	for _, tt := range tests {
		if got := validHost(tt.in); got != tt.want {
			t.Errorf("validHost(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
