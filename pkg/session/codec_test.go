package session_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

func newCodec(t testing.TB, secret string) *session.Codec {
	t.Helper()
	c, err := session.NewCodec([]byte(secret))
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

func newTicket(t testing.TB, c *session.Codec) session.Ticket {
	t.Helper()
	tk, err := c.NewTicket()
	if err != nil {
		t.Fatalf("NewTicket: %v", err)
	}
	return tk
}

const secretA = "0123456789abcdef0123456789abcdef"

func TestNewCodecSecretLength(t *testing.T) {
	tests := []struct {
		secret  string
		wantErr bool
	}{
		{"", true},
		{strings.Repeat("x", 31), true},
		{strings.Repeat("x", 32), false},
		{strings.Repeat("x", 64), false},
	}
	for _, tt := range tests {
		_, err := session.NewCodec([]byte(tt.secret))
		if (err != nil) != tt.wantErr {
			t.Errorf("NewCodec(%d bytes) error = %v, wantErr %v", len(tt.secret), err, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "at least 32 bytes") {
			t.Errorf("error %q does not say the required length", err)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	c := newCodec(t, secretA)
	tk := newTicket(t, c)
	value := c.Encode(tk)
	if !strings.HasPrefix(value, "v1.") || strings.ContainsAny(value, "=+/ ;,") {
		t.Fatalf("cookie value %q is not v1 base64url", value)
	}
	got, err := c.Decode(value)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.ID() != tk.ID() || len(tk.ID()) != 64 {
		t.Fatalf("decoded ID %s, want %s", got.ID(), tk.ID())
	}
	sealed, err := tk.Seal([]byte("tokens"))
	if err != nil {
		t.Fatal(err)
	}
	opened, err := got.Open(sealed)
	if err != nil || string(opened) != "tokens" {
		t.Fatalf("decoded ticket Open = %q, %v", opened, err)
	}
	if other := newTicket(t, c); other.ID() == tk.ID() || c.Encode(other) == value {
		t.Fatal("two tickets are equal")
	}
	// The raw ID in the cookie is not the storage ID.
	if strings.Contains(value, tk.ID()) {
		t.Fatal("cookie contains the storage ID")
	}
}

func TestCodecDecodeRejects(t *testing.T) {
	c := newCodec(t, secretA)
	tk := newTicket(t, c)
	valid := c.Encode(tk)
	parts := strings.Split(valid, ".")
	otherCodec := newCodec(t, strings.Repeat("z", 32))
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name  string
		value string
	}{
		{"empty", ""},
		{"truncated", valid[:len(valid)-1]},
		{"truncated part", strings.Join(parts[:3], ".")},
		{"oversized", valid + "A"},
		{"huge", strings.Repeat("A", 1<<20)},
		{"wrong version", "v2" + valid[2:]},
		{"forged MAC", parts[0] + "." + parts[1] + "." + parts[2] + "." + flip(parts[3], 5)},
		{"changed ID", parts[0] + "." + flip(parts[1], 3) + "." + parts[2] + "." + parts[3]},
		{"changed key", parts[0] + "." + parts[1] + "." + flip(parts[2], 3) + "." + parts[3]},
		{"swapped parts", parts[0] + "." + parts[2] + "." + parts[1] + "." + parts[3]},
		{"other secret", otherCodec.Encode(tk)},
		{"padding", parts[0] + "." + parts[1][:42] + "=." + parts[2] + "." + parts[3]},
		{"std base64 alphabet", parts[0] + "." + parts[1][:10] + "+" + parts[1][11:] + "." + parts[2] + "." + parts[3]},
		{"whitespace", parts[0] + "." + parts[1][:10] + " " + parts[1][11:] + "." + parts[2] + "." + parts[3]},
		{"moved dot", parts[0] + "." + parts[1][:42] + "." + parts[1][42:] + parts[2] + "." + parts[3]},
		{"non-canonical base64", parts[0] + "." + parts[1][:42] + nonCanonical(parts[1][42]) + "." + parts[2] + "." + parts[3]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.value == valid {
				t.Fatal("test case does not change the valid value")
			}
			_, err := c.Decode(tt.value)
			if !errors.Is(err, session.ErrInvalidCookie) {
				t.Fatalf("Decode error = %v, want ErrInvalidCookie", err)
			}
		})
	}
}

// nonCanonical returns another base64url character that decodes to the
// same bytes in the last position (only the unused low bits differ).
func nonCanonical(last byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, last)
	return string(alphabet[i^1])
}

func TestTicketSealOpen(t *testing.T) {
	c := newCodec(t, secretA)
	tk := newTicket(t, c)
	plain := []byte(`{"refresh_token":"rt"}`)
	sealed, err := tk.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tk.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of the same plaintext are equal: nonce reused")
	}
	if bytes.Contains(sealed, plain) {
		t.Fatal("sealed data contains the plaintext")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	other := newTicket(t, c)
	tests := []struct {
		name   string
		ticket session.Ticket
		data   []byte
	}{
		{"tampered", tk, tampered},
		{"truncated", tk, sealed[:len(sealed)-1]},
		{"short", tk, sealed[:5]},
		{"empty", tk, nil},
		// A record copied under another session: other key and other AAD.
		{"other ticket", other, sealed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.ticket.Open(tt.data); !errors.Is(err, session.ErrDecrypt) {
				t.Fatalf("Open error = %v, want ErrDecrypt", err)
			}
		})
	}
	got, err := tk.Open(sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
}

// TestTicketOpenChecksStorageID shows the AAD binding on its own: the same
// key with another raw ID (so another storage ID) does not open the data.
func TestTicketOpenChecksStorageID(t *testing.T) {
	c := newCodec(t, secretA)
	a, b := newTicket(t, c), newTicket(t, c)
	sealed, err := a.Seal([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	// A correctly MACed cookie with b's raw ID and a's key: the key is
	// right, only the storage ID (the AAD) differs.
	pa, pb := strings.Split(c.Encode(a), "."), strings.Split(c.Encode(b), ".")
	spliced := resign(t, pb[1], pa[2])
	tk, err := c.Decode(spliced)
	if err != nil {
		t.Fatalf("Decode spliced: %v", err)
	}
	if tk.ID() != b.ID() {
		t.Fatal("splice did not take b's ID")
	}
	if _, err := tk.Open(sealed); !errors.Is(err, session.ErrDecrypt) {
		t.Fatalf("Open with the right key under another ID = %v, want ErrDecrypt", err)
	}
}

// resign builds a valid cookie for secretA from base64url ID and key parts,
// computing the MAC the way the format documents it.
func resign(t *testing.T, id, key string) string {
	t.Helper()
	mac := hmacCookie(t, []byte(secretA), "v1."+id+"."+key)
	return "v1." + id + "." + key + "." + base64.RawURLEncoding.EncodeToString(mac)
}

func TestUserKey(t *testing.T) {
	a, b := session.UserKey("alice"), session.UserKey("bob")
	if a == b || len(a) != 64 || strings.Contains(a, "alice") {
		t.Fatalf("UserKey(alice) = %q, UserKey(bob) = %q", a, b)
	}
	if session.UserKey("alice") != a {
		t.Fatal("UserKey is not deterministic")
	}
}

func BenchmarkCodecDecodeOpen(b *testing.B) {
	c := newCodec(b, secretA)
	tk := newTicket(b, c)
	value := c.Encode(tk)
	sealed, err := tk.Seal(bytes.Repeat([]byte("t"), 1024))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := c.Decode(value)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := got.Open(sealed); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCodecSealValue(t *testing.T) {
	a := newCodec(t, secretA)
	sealed, err := a.SealValue([]byte("downstream-token"), []byte("key-1"))
	if err != nil {
		t.Fatalf("SealValue: %v", err)
	}
	if bytes.Contains(sealed, []byte("downstream-token")) {
		t.Fatal("sealed value holds the plaintext")
	}
	again, err := a.SealValue([]byte("downstream-token"), []byte("key-1"))
	if err != nil {
		t.Fatalf("SealValue: %v", err)
	}
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name    string
		codec   *session.Codec
		value   []byte
		ad      string
		wantErr error
	}{
		{name: "same secret on another replica", codec: newCodec(t, secretA), value: sealed, ad: "key-1"},
		{name: "moved to another key", codec: a, value: sealed, ad: "key-2", wantErr: session.ErrDecrypt},
		{name: "other secret", codec: newCodec(t, strings.Repeat("z", 32)), value: sealed, ad: "key-1", wantErr: session.ErrDecrypt},
		{name: "tampered", codec: a, value: tampered, ad: "key-1", wantErr: session.ErrDecrypt},
		{name: "truncated", codec: a, value: sealed[:5], ad: "key-1", wantErr: session.ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, err := tt.codec.OpenValue(tt.value, []byte(tt.ad))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("OpenValue error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && string(plain) != "downstream-token" {
				t.Fatalf("OpenValue = %q", plain)
			}
		})
	}
}
