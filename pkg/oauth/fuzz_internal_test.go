package oauth

import (
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzRedirectURI checks what dynamic registration (and a client metadata
// document) accepts as a redirect URI: never a scheme that runs or reads
// content in the browser, never a fragment, user info or control character,
// http only on loopback; and a redirect URI that matches a registered one at
// /authorize is itself acceptable and on the same host.
func FuzzRedirectURI(f *testing.F) {
	for _, s := range []string{
		"https://app.example.com/cb", "http://127.0.0.1:1234/cb", "http://[::1]/cb", "http://localhost/cb",
		"cursor://anysphere.cursor-mcp/oauth/callback", "com.example.app:/cb", "javascript:alert(1)",
		"JavaScript://%0aalert(1)", "data:text/html,x", "file:///etc/passwd", "http://evil.example/cb",
		"https://user@app.example.com/cb", "https://app.example.com/cb#x", "http://127.0.0.1.evil.example/cb",
		"http://0x7f.1/cb", "https://app.example.com/cb\r\nx", " javascript:alert(1)",
	} {
		f.Add(s, "http://127.0.0.1:50999/cb")
	}
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if err := validateRedirectURI(registered); err != nil {
			return
		}
		checkRedirectURI(t, registered)
		if redirectMatches(registered, requested) {
			if err := validateRedirectURI(requested); err != nil {
				t.Fatalf("%q matches registered %q but is not a valid redirect URI: %v", requested, registered, err)
			}
			checkRedirectURI(t, requested)
			ru, _ := url.Parse(registered)
			qu, _ := url.Parse(requested)
			if !strings.EqualFold(ru.Scheme, qu.Scheme) || ru.Hostname() != qu.Hostname() {
				t.Fatalf("%q matches registered %q on another scheme or host", requested, registered)
			}
		}
	})
}

func checkRedirectURI(t *testing.T, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("accepted %q, which does not parse: %v", raw, err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case slices.Contains(forbiddenSchemes, scheme):
		t.Fatalf("accepted %q with scheme %q", raw, scheme)
	case strings.ContainsAny(raw, "#"):
		t.Fatalf("accepted %q with a fragment", raw)
	case u.User != nil:
		t.Fatalf("accepted %q with user info", raw)
	case strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		t.Fatalf("accepted %q with a control character", raw)
	case scheme == "http" && !isLoopbackHost(u.Hostname()):
		t.Fatalf("accepted plain http to %q", u.Hostname())
	case scheme == "https" && u.Host == "":
		t.Fatalf("accepted https without a host: %q", raw)
	}
}

// FuzzCIMDURL checks the client_id URLs accepted as client metadata
// documents: https with a host and a path, no credentials, fragment or dot
// segments. Whatever the URL names, a literal address in it is fetched only
// when it is public.
func FuzzCIMDURL(f *testing.F) {
	for _, s := range []string{
		"https://client.example/metadata.json", "https://127.0.0.1/c.json", "https://[::1]/c.json",
		"https://169.254.169.254/latest/meta-data", "https://[::ffff:127.0.0.1]/c", "https://[64:ff9b::a00:1]/c",
		"http://client.example/c", "https://u:p@client.example/c", "https://client.example/a/../c",
		"https://client.example/c#f", "https://client.example", "https://client.example/%2e%2e/c",
		"https://0177.0.0.1/c", "https://2130706433/c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := validateCIMDURL(raw)
		if err != nil {
			return
		}
		if u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") || u.Path == "" || u.Path == "/" {
			t.Fatalf("accepted client_id %q (%+v)", raw, u)
		}
		if slices.Contains(strings.Split(u.Path, "/"), "..") {
			t.Fatalf("accepted client_id %q with a dot segment", raw)
		}
		if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
			a = a.Unmap()
			if publicAddr(a) && (a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified()) {
				t.Fatalf("address %s of %q counts as public", a, raw)
			}
		}
	})
}
