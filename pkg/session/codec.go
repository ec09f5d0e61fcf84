package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidCookie means a session cookie value is malformed, oversized or
// carries a wrong MAC. Callers treat it like "no session": the cookie was not
// issued by us (or not with the current secret).
var ErrInvalidCookie = errors.New("session: invalid cookie")

// ErrDecrypt means a stored session payload does not open with the key from
// the cookie: it was tampered with, or copied under another session ID.
var ErrDecrypt = errors.New("session: cannot decrypt session data")

// MinSecretLen is the minimum cookie secret length in bytes: HMAC-SHA256
// keys shorter than the hash output weaken the MAC.
const MinSecretLen = 32

const (
	cookieVersion = "v1"
	rawIDLen      = 32
	dataKeyLen    = 32 // AES-256
	macLen        = sha256.Size
	// macInfo separates the MAC key from any other key that might one day be
	// derived from the same secret.
	macInfo = "mcp-oidc-proxy cookie mac v1"
	// valueInfo derives the key of SealValue, separate from the MAC key.
	valueInfo = "mcp-oidc-proxy shared value seal v1"
)

var (
	b64 = base64.RawURLEncoding.Strict()
	// cookieLen is the exact length of every valid cookie value; anything
	// else is rejected before decoding or MAC work.
	cookieLen = len(cookieVersion) + 3 +
		b64.EncodedLen(rawIDLen) + b64.EncodedLen(dataKeyLen) + b64.EncodedLen(macLen)
)

// Codec turns session tickets into cookie values and back. The cookie holds
// the only copy of the key that encrypts the session payload at rest, so a
// dump of the store reveals neither tokens nor usable cookies (the store keys
// by a hash of the raw ID, never the ID itself).
type Codec struct {
	macKey []byte
	// values seals what every replica must open (SealValue); its key is
	// derived from the same secret, so replicas sharing the cookie secret
	// share it.
	values cipher.AEAD
}

// NewCodec derives the cookie MAC key from the configured cookie secret
// with HKDF-SHA256, so the secret itself is never used directly as a key.
func NewCodec(secret []byte) (*Codec, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("session: cookie secret must be at least %d bytes, got %d", MinSecretLen, len(secret))
	}
	key, err := hkdf.Key(sha256.New, secret, nil, macInfo, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("session: derive cookie MAC key: %w", err)
	}
	valueKey, err := hkdf.Key(sha256.New, secret, nil, valueInfo, dataKeyLen)
	if err != nil {
		return nil, fmt.Errorf("session: derive value seal key: %w", err)
	}
	values, err := newAEAD(valueKey)
	if err != nil {
		return nil, err
	}
	return &Codec{macKey: key, values: values}, nil
}

// SealValue encrypts a value that any replica must be able to open, unlike
// a session payload whose key only the cookie holds: credentials the
// replicas cache for each other in the store, such as exchanged downstream
// tokens. The key is derived from the cookie secret (AES-256-GCM, random
// nonce prepended). ad, normally the value's storage key, is authenticated:
// a sealed value copied under another key does not open.
func (c *Codec) SealValue(plaintext, ad []byte) ([]byte, error) {
	return seal(c.values, plaintext, ad)
}

// OpenValue decrypts what SealValue produced with the same ad. Anything that
// does not authenticate (tampered, moved, sealed under another secret) is
// ErrDecrypt.
func (c *Codec) OpenValue(ciphertext, ad []byte) ([]byte, error) {
	return open(c.values, ciphertext, ad)
}

// Ticket is what a session cookie carries: a random raw ID (whose hash is
// the storage ID) and a random AES-256 key that encrypts the stored payload.
type Ticket struct {
	rawID [rawIDLen]byte
	key   [dataKeyLen]byte
}

// NewTicket draws a fresh ticket from crypto/rand, for a new login.
func (c *Codec) NewTicket() (Ticket, error) {
	var t Ticket
	if _, err := rand.Read(t.rawID[:]); err != nil {
		return Ticket{}, fmt.Errorf("session: random ticket ID: %w", err)
	}
	if _, err := rand.Read(t.key[:]); err != nil {
		return Ticket{}, fmt.Errorf("session: random ticket key: %w", err)
	}
	return t, nil
}

// ID is the storage ID for Record.ID: hex SHA-256 of the raw ID, so that
// someone reading the store cannot rebuild the cookie.
func (t Ticket) ID() string {
	sum := sha256.Sum256(t.rawID[:])
	return hex.EncodeToString(sum[:])
}

// Equal reports whether t and o are the same ticket (raw ID and key), in
// time that does not depend on where they differ.
func (t Ticket) Equal(o Ticket) bool {
	return subtle.ConstantTimeCompare(t.rawID[:], o.rawID[:])&subtle.ConstantTimeCompare(t.key[:], o.key[:]) == 1
}

// Encode returns the cookie value "v1.<id>.<key>.<mac>" (base64url without
// padding; the MAC is HMAC-SHA256 over "v1.<id>.<key>").
func (c *Codec) Encode(t Ticket) string {
	var sb strings.Builder
	sb.Grow(cookieLen)
	sb.WriteString(cookieVersion)
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(t.rawID[:]))
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(t.key[:]))
	signed := sb.String()
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(c.mac(signed)))
	return sb.String()
}

// Decode parses and authenticates a cookie value. Every failure is
// ErrInvalidCookie: a caller has nothing useful to do with the detail, and
// an attacker should learn nothing from it.
func (c *Codec) Decode(value string) (Ticket, error) {
	// Reject by length first: no decoding or MAC work for junk.
	if len(value) != cookieLen {
		return Ticket{}, ErrInvalidCookie
	}
	parts := strings.Split(value, ".")
	if len(parts) != 4 || parts[0] != cookieVersion ||
		len(parts[1]) != b64.EncodedLen(rawIDLen) ||
		len(parts[2]) != b64.EncodedLen(dataKeyLen) ||
		len(parts[3]) != b64.EncodedLen(macLen) {
		return Ticket{}, ErrInvalidCookie
	}
	gotMAC, err := b64.DecodeString(parts[3])
	if err != nil || len(gotMAC) != macLen {
		return Ticket{}, ErrInvalidCookie
	}
	signedLen := len(value) - len(parts[3]) - 1
	if !hmac.Equal(gotMAC, c.mac(value[:signedLen])) {
		return Ticket{}, ErrInvalidCookie
	}
	var t Ticket
	if n, err := b64.Decode(t.rawID[:], []byte(parts[1])); err != nil || n != rawIDLen {
		return Ticket{}, ErrInvalidCookie
	}
	if n, err := b64.Decode(t.key[:], []byte(parts[2])); err != nil || n != dataKeyLen {
		return Ticket{}, ErrInvalidCookie
	}
	return t, nil
}

func (c *Codec) mac(signed string) []byte {
	m := hmac.New(sha256.New, c.macKey)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// Seal encrypts a session payload with the ticket's key (AES-256-GCM, random
// nonce prepended). The storage ID is the additional data, so a sealed
// record copied under another session ID does not open.
func (t Ticket) Seal(plaintext []byte) ([]byte, error) {
	aead, err := t.aead()
	if err != nil {
		return nil, err
	}
	return seal(aead, plaintext, []byte(t.ID()))
}

// seal encrypts plaintext with a random nonce, which it prepends.
func seal(aead cipher.AEAD, plaintext, ad []byte) ([]byte, error) {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("session: random nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, ad), nil
}

// Open decrypts what Seal produced for this ticket. Anything that does not
// authenticate is ErrDecrypt.
func (t Ticket) Open(ciphertext []byte) ([]byte, error) {
	aead, err := t.aead()
	if err != nil {
		return nil, err
	}
	return open(aead, ciphertext, []byte(t.ID()))
}

// open decrypts what seal produced with the same ad.
func open(aead cipher.AEAD, ciphertext, ad []byte) ([]byte, error) {
	ns := aead.NonceSize()
	if len(ciphertext) < ns+aead.Overhead() {
		return nil, ErrDecrypt
	}
	plain, err := aead.Open(nil, ciphertext[:ns], ciphertext[ns:], ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}

func (t Ticket) aead() (cipher.AEAD, error) { return newAEAD(t.key[:]) }

// newAEAD is AES-256-GCM with key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("session: AES key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session: GCM: %w", err)
	}
	return aead, nil
}

// UserKey is the Record.UserKey for an OIDC subject: hex SHA-256, so the
// store never holds raw subjects in its key names.
func UserKey(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return hex.EncodeToString(sum[:])
}
