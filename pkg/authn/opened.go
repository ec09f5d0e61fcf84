package authn

import (
	"bytes"
	"sync"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// openedLimit bounds how many decoded sessions a replica keeps. A session
// that falls out is decoded again on its next request, nothing more.
const openedLimit = 1024

// opened keeps the decoded payload of recently used sessions, so that a
// request whose stored record has not changed costs neither the AES-GCM open
// nor the JSON decode of its payload (with the session cache in front of
// Redis, that decode was the largest part of the cookie path). An entry is
// used only for the ticket it was decoded with (raw ID and key, compared in
// constant time) and only while the stored ciphertext is byte for byte the
// one it was decoded from: a refresh or any other write misses it, and a
// caller never skips the proof of key that opening the record gives.
//
// The payload is shared by the requests that hit it: readers treat it, and
// the identity in it, as read-only, as they already do for bearer tokens.
type opened struct {
	mu sync.Mutex
	m  map[string]openedEntry // by storage ID
}

type openedEntry struct {
	ticket session.Ticket
	data   []byte
	p      payload
}

func newOpened() *opened { return &opened{m: make(map[string]openedEntry)} }

// get returns the payload decoded from exactly this ticket and data.
func (o *opened) get(id string, t session.Ticket, data []byte) (payload, bool) {
	o.mu.Lock()
	e, ok := o.m[id]
	o.mu.Unlock()
	if !ok || !e.ticket.Equal(t) || !bytes.Equal(e.data, data) {
		return payload{}, false
	}
	return e.p, true
}

// put remembers p as what t decodes data to; when full, an arbitrary entry
// makes room.
func (o *opened) put(id string, t session.Ticket, data []byte, p payload) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.m[id]; !ok && len(o.m) >= openedLimit {
		for k := range o.m {
			delete(o.m, k)
			break
		}
	}
	o.m[id] = openedEntry{ticket: t, data: data, p: p}
}

// forget drops a session that ended, so its tokens do not linger here.
func (o *opened) forget(id string) {
	o.mu.Lock()
	delete(o.m, id)
	o.mu.Unlock()
}
