package session

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzSecret is a fixed cookie secret for the fuzz targets: a seed corpus
// entry stays meaningful only if the MAC key does not change between runs.
var fuzzSecret = []byte("fuzz-cookie-secret-0123456789abcdefghijklmnop")

// FuzzCodecDecode throws arbitrary cookie values at Decode. An accepted value
// must be exactly the encoding of the ticket it yields: a cookie has one
// spelling, so nothing an attacker can vary (padding, case, extra dots,
// trailing bytes) is ever accepted as the same session.
func FuzzCodecDecode(f *testing.F) {
	c, err := NewCodec(fuzzSecret)
	if err != nil {
		f.Fatal(err)
	}
	t, err := c.NewTicket()
	if err != nil {
		f.Fatal(err)
	}
	valid := c.Encode(t)
	f.Add(valid)
	f.Add(valid[:len(valid)-1] + "A")
	f.Add("v2" + valid[2:])
	f.Add(valid + "=")
	f.Add("")
	f.Add("v1...")
	f.Add("v1." + valid[3:len(valid)-3] + "...")
	f.Fuzz(func(t *testing.T, value string) {
		tk, err := c.Decode(value)
		if err != nil {
			if !errors.Is(err, ErrInvalidCookie) {
				t.Fatalf("Decode error %v is not ErrInvalidCookie", err)
			}
			return
		}
		if again := c.Encode(tk); again != value {
			t.Fatalf("accepted %q, but its ticket encodes as %q", value, again)
		}
	})
}

// FuzzTicketRoundTrip checks Encode/Decode and Seal/Open for arbitrary
// ticket material and payloads, and that a payload sealed for one ticket
// never opens under another.
func FuzzTicketRoundTrip(f *testing.F) {
	f.Add(bytes.Repeat([]byte{1}, rawIDLen), bytes.Repeat([]byte{2}, dataKeyLen), []byte(`{"sub":"alice"}`), byte(0))
	f.Add(make([]byte, rawIDLen), make([]byte, dataKeyLen), []byte{}, byte(7))
	c, err := NewCodec(fuzzSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id, key, plain []byte, flip byte) {
		var tk Ticket
		copy(tk.rawID[:], id)
		copy(tk.key[:], key)
		got, err := c.Decode(c.Encode(tk))
		if err != nil || got != tk {
			t.Fatalf("Decode(Encode(t)) = %v, %v; want the same ticket", got, err)
		}
		sealed, err := tk.Seal(plain)
		if err != nil {
			t.Fatal(err)
		}
		opened, err := tk.Open(sealed)
		if err != nil || !bytes.Equal(opened, plain) {
			t.Fatalf("Open(Seal(p)) = %q, %v; want %q", opened, err, plain)
		}
		other := tk
		other.rawID[int(flip)%rawIDLen] ^= 1
		if _, err := other.Open(sealed); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("a payload sealed for one session opened under another ID: %v", err)
		}
		tampered := bytes.Clone(sealed)
		tampered[int(flip)%len(tampered)] ^= 0x80
		if _, err := tk.Open(tampered); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("a tampered payload opened: %v", err)
		}
	})
}

// FuzzTicketOpen feeds arbitrary stored bytes to Open: a record that was not
// sealed with the ticket's key is always ErrDecrypt, never a panic or a
// plaintext.
func FuzzTicketOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 12))
	f.Add(make([]byte, 28))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	var tk Ticket
	copy(tk.key[:], "fuzz-ticket-key-0123456789abcdef")
	f.Fuzz(func(t *testing.T, ciphertext []byte) {
		if _, err := tk.Open(ciphertext); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Open of unsealed bytes: %v, want ErrDecrypt", err)
		}
	})
}
