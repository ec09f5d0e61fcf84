package authn

import (
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// TestOpenedUsesOnlyTheSameTicketAndCiphertext: a decoded payload is reused
// only for the ticket it was opened with and the exact stored bytes, so a
// refreshed record or another key never gets it.
func TestOpenedUsesOnlyTheSameTicketAndCiphertext(t *testing.T) {
	codec, err := session.NewCodec([]byte("opened-test-secret-opened-test-secret-0123"))
	if err != nil {
		t.Fatal(err)
	}
	tk, _ := codec.NewTicket()
	other, _ := codec.NewTicket()
	data := []byte("sealed-record-v1")
	p := payload{Identity: identity.Identity{Subject: "alice"}, RefreshToken: "r1"}

	tests := []struct {
		name   string
		ticket session.Ticket
		data   []byte
		want   bool
	}{
		{"same ticket, same bytes", tk, []byte("sealed-record-v1"), true},
		{"same ticket, record rewritten (refresh)", tk, []byte("sealed-record-v2"), false},
		{"same ticket, record truncated", tk, []byte("sealed-record-v"), false},
		{"another ticket, same bytes", other, []byte("sealed-record-v1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOpened()
			o.put(tk.ID(), tk, data, p)
			got, ok := o.get(tk.ID(), tt.ticket, tt.data)
			if ok != tt.want {
				t.Fatalf("hit = %v, want %v", ok, tt.want)
			}
			if ok && got.Identity.Subject != "alice" {
				t.Fatalf("payload = %+v", got)
			}
		})
	}

	o := newOpened()
	o.put(tk.ID(), tk, data, p)
	o.forget(tk.ID())
	if _, ok := o.get(tk.ID(), tk, data); ok {
		t.Fatal("a forgotten session is still served")
	}
}

// TestOpenedIsBounded: the memo never holds more than openedLimit sessions.
func TestOpenedIsBounded(t *testing.T) {
	codec, err := session.NewCodec([]byte("opened-test-secret-opened-test-secret-0123"))
	if err != nil {
		t.Fatal(err)
	}
	o := newOpened()
	var last session.Ticket
	for range openedLimit + 50 {
		last, _ = codec.NewTicket()
		o.put(last.ID(), last, []byte("x"), payload{})
	}
	if n := len(o.m); n > openedLimit {
		t.Fatalf("%d entries, want at most %d", n, openedLimit)
	}
	if _, ok := o.get(last.ID(), last, []byte("x")); !ok {
		t.Fatal("the newest entry was evicted to make room for itself")
	}
}

// TestTicketEqual: Equal compares both halves of the ticket.
func TestTicketEqual(t *testing.T) {
	codec, err := session.NewCodec([]byte("opened-test-secret-opened-test-secret-0123"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := codec.NewTicket()
	b, _ := codec.NewTicket()
	decoded, err := codec.Decode(codec.Encode(a))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equal(decoded) || a.Equal(b) || b.Equal(a) {
		t.Fatalf("Equal: a==decoded %v, a==b %v", a.Equal(decoded), a.Equal(b))
	}
}
