package returnurl

import "testing"

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"root", "/", true},
		{"path", "/app", true},
		{"path with query", "/app/page?x=1&y=two", true},
		{"path with fragment", "/app#section", true},
		{"encoded slash inside path", "/files/a%2Fb", true},
		{"encoded space", "/search?q=hello%20world", true},
		{"double slash later in path", "/a//b", true},
		{"absolute url in query", "/login?next=https://evil.com", true},
		{"unicode path", "/caf%C3%A9", true},
		{"dot segments", "/a/../b", true},

		{"empty", "", false},
		{"relative without slash", "app", false},
		{"dot relative", "./app", false},
		{"protocol relative", "//evil.com", false},
		{"protocol relative with path", "//evil.com/path", false},
		{"triple slash", "///evil.com", false},
		{"slash backslash", "/\\evil.com", false},
		{"backslash slash", "\\/evil.com", false},
		{"backslash later", "/app\\..\\evil", false},
		{"https scheme", "https://evil.com", false},
		{"http scheme", "http://evil.com/", false},
		{"javascript scheme", "javascript:alert(1)", false},
		{"data scheme", "data:text/html,<script>", false},
		{"scheme uppercase", "HTTPS://evil.com", false},
		{"scheme without slashes", "https:evil.com", false},
		{"tab between slashes", "/\t/evil.com", false},
		{"newline between slashes", "/\n/evil.com", false},
		{"carriage return", "/\r/evil.com", false},
		{"nul", "/app\x00", false},
		{"del", "/app\x7f", false},
		{"space", "/ /evil.com", false},
		{"leading space", " /app", false},
		{"c1 control", "/app\u0085", false},
		{"line separator", "/\u2028/evil.com", false},
		{"encoded double slash", "/%2F%2Fevil.com", false},
		{"encoded double slash lowercase", "/%2f%2fevil.com", false},
		{"encoded slash after slash", "/%2Fevil.com", false},
		{"encoded backslash", "/%5Cevil.com", false},
		{"encoded backslash lowercase", "/%5cevil.com", false},
		{"fully encoded protocol relative", "%2F%2Fevil.com", false},
		{"encoded leading slash", "%2Fapp", false},
		{"encoded tab", "/%09/evil.com", false},
		{"encoded newline", "/%0A/evil.com", false},
		{"encoded nul", "/app%00", false},
		{"double encoded double slash", "/%252F%252Fevil.com", false},
		{"triple encoded double slash", "/%25252F%25252Fevil.com", false},
		{"double encoded backslash", "/%255Cevil.com", false},
		{"double encoded tab", "/%2509/evil.com", false},
		{"encoding beyond the bound", "/%2525252525252F", false},
		{"invalid escape", "/app%zz", false},
		{"truncated escape", "/app%2", false},
		{"encoded scheme", "/%68ttps://evil.com", true}, // still a path: "/https://evil.com" is same origin
		{"userinfo trick", "/@evil.com", true},          // a path on this host
		{"at in authority", "//user@evil.com", false},
		{"invalid utf8", "/\xff", false},
		{"too long", longPath(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Validate(tt.in)
			if ok != tt.ok {
				t.Fatalf("Validate(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			want := Default
			if tt.ok {
				want = tt.in
			}
			if got != want {
				t.Fatalf("Validate(%q) = %q, want %q", tt.in, got, want)
			}
		})
	}
}

func longPath() string {
	b := make([]byte, maxLen+1)
	for i := range b {
		b[i] = 'a'
	}
	b[0] = '/'
	return string(b)
}
