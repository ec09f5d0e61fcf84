package weborigin

import "testing"

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://MCP.Example.com", "https://mcp.example.com"},
		{"https://mcp.example.com:443", "https://mcp.example.com"},
		{"http://mcp.example.com:80/", "http://mcp.example.com"},
		{"http://127.0.0.1:15080/path?q", "http://127.0.0.1:15080"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{" https://a.example ", "https://a.example"},
		{"null", ""},
		{"", ""},
		{"javascript:alert(1)", ""},
		{"ftp://a.example", ""},
		{"https://user@a.example", ""},
		{"//a.example", ""},
	}
	for _, tt := range tests {
		if got := Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
