package returnurl

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzValidate checks the promise of Validate for arbitrary input: an
// accepted value is returned unchanged and, as the browser will resolve it
// against the proxy's origin (after stripping tabs and newlines, as browsers
// do, and after any number of decodings up to the bound), stays on that
// origin; a refused value always yields Default.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		"/", "/app?x=1#frag", "/a/b%20c", "//evil.example", "/\\evil.example", "https://evil.example",
		"/%2F%2Fevil.example", "/%252F%252Fevil.example", "/\t/evil.example", "/%0d%0aSet-Cookie:x=1",
		"/\r\nLocation: https://evil.example", "javascript:alert(1)", "/..//evil.example", "/%5Cevil.example",
		"/@evil.example", "/a\u2028b", "\x00/", "/%E2%80%A8", "/%zz",
	} {
		f.Add(s)
	}
	const origin = "https://proxy.example"
	base, err := url.Parse(origin + "/some/page")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, ok := Validate(raw)
		if !ok {
			if got != Default {
				t.Fatalf("refused %q but returned %q, want %q", raw, got, Default)
			}
			return
		}
		if got != raw {
			t.Fatalf("accepted %q but returned %q", raw, got)
		}
		// What a browser does with a Location before resolving it.
		stripped := strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, raw)
		if stripped != raw {
			t.Fatalf("accepted %q with tab, CR or LF", raw)
		}
		if strings.ContainsAny(raw, "\\\x00") {
			t.Fatalf("accepted %q with a backslash or NUL", raw)
		}
		s := raw
		for range maxDecodeRounds + 1 {
			if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\\r\n\t") {
				t.Fatalf("accepted %q, which decodes to %q", raw, s)
			}
			dec, err := url.PathUnescape(s)
			if err != nil || dec == s {
				break
			}
			s = dec
		}
		ref, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", raw, err)
		}
		if abs := base.ResolveReference(ref); abs.Scheme+"://"+abs.Host != origin || abs.User != nil {
			t.Fatalf("accepted %q, which resolves to %q, off the origin", raw, abs)
		}
	})
}
