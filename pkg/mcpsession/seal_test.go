package mcpsession_test

import (
	"errors"
	mathrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpsession"
)

var (
	testSecret  = []byte("test-cookie-secret-0123456789abcdefghijklmnop")
	otherSecret = []byte("another-cookie-secret-0123456789abcdefghijklm")
	t0          = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
)

func newSealer(t testing.TB, secret []byte) *mcpsession.Sealer {
	t.Helper()
	s, err := mcpsession.NewSealer(secret)
	if err != nil {
		t.Fatalf("NewSealer: %v", err)
	}
	return s
}

func TestNewSealerRefusesShortSecret(t *testing.T) {
	if _, err := mcpsession.NewSealer([]byte("short")); err == nil {
		t.Fatal("NewSealer accepted a 5-byte secret")
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := newSealer(t, testSecret)
	cases := []mcpsession.Claims{
		{Owner: "198.18.0.5:8443", Upstream: "ABCDEF0123", Issuer: "https://idp.example", Subject: "alice", Expiry: t0.Add(time.Hour)},
		{Owner: "", Upstream: "x", Issuer: "", Subject: "", Expiry: t0.Add(time.Second)},
		{Owner: "[2001:db8::1]:443", Upstream: strings.Repeat("u", 1000), Issuer: "https://idp.example/realms/ü", Subject: "böb", Expiry: t0.Add(24 * time.Hour)},
	}
	for _, c := range cases {
		id, err := s.Seal(c)
		if err != nil {
			t.Fatalf("Seal(%+v): %v", c, err)
		}
		if !strings.HasPrefix(id, "m1.") {
			t.Errorf("id %q has no version prefix", id)
		}
		for _, ch := range []byte(id) {
			if ch < 0x21 || ch > 0x7e {
				t.Fatalf("id %q has a character outside visible ASCII: %q", id, ch)
			}
		}
		got, err := s.Open(id, t0)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !got.Expiry.Equal(c.Expiry) || got.Owner != c.Owner || got.Upstream != c.Upstream || got.Issuer != c.Issuer || got.Subject != c.Subject {
			t.Errorf("Open = %+v, want %+v", got, c)
		}
		again, err := s.Seal(c)
		if err != nil {
			t.Fatal(err)
		}
		if again == id {
			t.Error("two seals of the same claims are equal: the nonce is not random")
		}
		// A claim long enough not to occur by chance must not show.
		for _, claim := range []string{c.Upstream, c.Issuer, c.Owner} {
			if len(claim) >= 8 && strings.Contains(id, claim) {
				t.Errorf("the sealed id shows %q in the clear", claim)
			}
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	s := newSealer(t, testSecret)
	claims := mcpsession.Claims{Owner: "198.18.0.5:8443", Upstream: "up", Issuer: "iss", Subject: "alice", Expiry: t0.Add(time.Hour)}
	id, err := s.Seal(claims)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := newSealer(t, otherSecret).Seal(claims)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := []byte(id)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := []struct {
		name string
		id   string
		now  time.Time
	}{
		{"empty", "", t0},
		{"upstream style id", "5XKZ2M7QJ4ONHWQ6", t0},
		{"wrong version", "m2." + id[3:], t0},
		{"no prefix", id[3:], t0},
		{"truncated", id[:len(id)-1], t0},
		{"short", "m1.AAAA", t0},
		{"padding", id + "=", t0},
		{"newline inside", id[:20] + "\n" + id[20:], t0},
		{"carriage return inside", id[:20] + "\r" + id[20:], t0},
		{"not base64", "m1." + strings.Repeat("*", 60), t0},
		{"flipped first byte", flip(3), t0},
		{"flipped middle byte", flip(len(id) / 2), t0},
		{"flipped last byte", flip(len(id) - 1), t0},
		{"other secret", foreign, t0},
		{"expired exactly", id, t0.Add(time.Hour)},
		{"expired later", id, t0.Add(48 * time.Hour)},
		{"oversized", "m1." + strings.Repeat("A", mcpsession.MaxIDLen), t0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Open(tc.id, tc.now)
			if !errors.Is(err, mcpsession.ErrUnknownSession) {
				t.Fatalf("Open = %v, want ErrUnknownSession", err)
			}
		})
	}
}

func TestSealRefusesOversizedClaims(t *testing.T) {
	s := newSealer(t, testSecret)
	_, err := s.Seal(mcpsession.Claims{Upstream: strings.Repeat("u", mcpsession.MaxIDLen), Expiry: t0})
	if err == nil {
		t.Fatal("Seal accepted claims whose id would exceed MaxIDLen")
	}
	// The largest claims that are accepted give an id within the bound.
	for n := mcpsession.MaxIDLen; n > 0; n-- {
		id, err := s.Seal(mcpsession.Claims{Upstream: strings.Repeat("u", n), Expiry: t0.Add(time.Hour)})
		if err != nil {
			continue
		}
		if len(id) > mcpsession.MaxIDLen {
			t.Fatalf("id of %d characters exceeds MaxIDLen", len(id))
		}
		if _, err := s.Open(id, t0); err != nil {
			t.Fatalf("largest id does not open: %v", err)
		}
		return
	}
	t.Fatal("no claims were small enough to seal")
}

// FuzzOpen throws arbitrary ids at Open: it never panics, and an id opens
// only if it is exactly one this key sealed (the encoding is strict and GCM
// authenticates every byte), never under another key.
func FuzzOpen(f *testing.F) {
	// Nonces from a fixed stream: every fuzzing process seals the same ids.
	s, err := mcpsession.NewSealerWithNonces(testSecret, mathrand.NewChaCha8([32]byte{1}))
	if err != nil {
		f.Fatal(err)
	}
	other := newSealer(f, otherSecret)
	sealed := map[string]bool{}
	for _, c := range []mcpsession.Claims{
		{Owner: "198.18.0.5:8443", Upstream: "up", Issuer: "iss", Subject: "alice", Expiry: t0.Add(time.Hour)},
		{Expiry: t0.Add(time.Hour)},
	} {
		id, err := s.Seal(c)
		if err != nil {
			f.Fatal(err)
		}
		sealed[id] = true
		f.Add(id)
		f.Add(id[:len(id)-2])
		f.Add(id + "A")
		f.Add(strings.ToUpper(id))
	}
	f.Add("")
	f.Add("m1.")
	f.Add("m1.====")
	f.Fuzz(func(t *testing.T, id string) {
		c, err := s.Open(id, t0)
		if err == nil && !sealed[id] {
			t.Fatalf("Open accepted an id it never sealed: %q -> %+v", id, c)
		}
		if err != nil && !errors.Is(err, mcpsession.ErrUnknownSession) {
			t.Fatalf("Open error %v does not wrap ErrUnknownSession", err)
		}
		if _, err := other.Open(id, t0); err == nil {
			t.Fatalf("an id opened under another key: %q", id)
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	s := newSealer(b, testSecret)
	c := mcpsession.Claims{Owner: "198.18.0.5:8443", Upstream: "5XKZ2M7QJ4ONHWQ6AB3C", Issuer: "https://idp.example", Subject: "alice", Expiry: t0}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Seal(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s := newSealer(b, testSecret)
	id, err := s.Seal(mcpsession.Claims{Owner: "198.18.0.5:8443", Upstream: "5XKZ2M7QJ4ONHWQ6AB3C", Issuer: "https://idp.example", Subject: "alice", Expiry: t0.Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(id, t0); err != nil {
			b.Fatal(err)
		}
	}
}
