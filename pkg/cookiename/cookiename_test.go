package cookiename

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		cookie   string
		insecure bool
		want     error
	}{
		{"secure default", SecureDefault, false, nil},
		{"insecure default", InsecureDefault, true, nil},
		{"plain name, secure", "sess", false, nil},
		{"plain name, insecure", "sess", true, nil},
		{"__Host- with Secure", "__Host-x", false, nil},
		{"__Secure- with Secure", "__Secure-x", false, nil},
		{"__Host- without Secure", "__Host-x", true, ErrNeedsSecure},
		{"__Secure- without Secure", "__Secure-x", true, ErrNeedsSecure},
		{"empty", "", false, ErrInvalid},
		{"space", "a b", false, ErrInvalid},
		{"separator", "a;b", true, ErrInvalid},
		{"control", "a\x01", false, ErrInvalid},
		{"non-ASCII", "sé", false, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.cookie, tt.insecure)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check(%q, insecure=%v) = %v, want nil", tt.cookie, tt.insecure, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check(%q, insecure=%v) = %v, want %v", tt.cookie, tt.insecure, err, tt.want)
			}
		})
	}
}

// The defaults pass their own rule, and the secure one carries the
// __Host- protection the package doc promises.
func TestDefault(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		if err := Check(Default(insecure), insecure); err != nil {
			t.Errorf("Default(%v) = %q fails Check: %v", insecure, Default(insecure), err)
		}
	}
	if !strings.HasPrefix(Default(false), "__Host-") {
		t.Errorf("secure default %q lacks the __Host- prefix", Default(false))
	}
	if Default(true) == Default(false) {
		t.Error("insecure and secure defaults are the same name")
	}
}
