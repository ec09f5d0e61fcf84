package mcpsession

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// ErrUnknownSession means a session id does not open: it was not sealed
// with this key (forged, tampered, from another deployment), is malformed or
// has expired. The MCP transport's answer for it is 404, so the client
// starts a new session.
var ErrUnknownSession = errors.New("mcpsession: unknown session")

const (
	// idPrefix versions the sealed id, so a later format can be told apart
	// and an id of another format is refused before any crypto work. It is
	// also the AEAD's additional data.
	idPrefix = "m1."
	// keyInfo separates this key from every other key derived from the
	// cookie secret (HKDF info).
	keyInfo = "mcp-oidc-proxy mcp session id v1"
	// MaxIDLen bounds a sealed id (characters), so Open rejects oversized
	// input before decoding and Seal never hands out an id a client or a
	// header limit might truncate.
	MaxIDLen = 4096
	nonceLen = 12
	tagLen   = 16
)

var b64 = base64.RawURLEncoding.Strict()

// maxPlaintext is the largest claims encoding that still fits MaxIDLen.
var maxPlaintext = b64.DecodedLen(MaxIDLen-len(idPrefix)) - nonceLen - tagLen

// Claims is what a sealed session id carries. Only the replica that sealed
// it and its peers (same secret) can read it.
type Claims struct {
	// Owner is the advertise address (host:port) of the replica whose MCP
	// server holds the session; "" when the replica never hops.
	Owner string
	// Upstream is the MCP server's own session id.
	Upstream string
	// Issuer and Subject name the user the session belongs to; any other
	// caller is refused.
	Issuer, Subject string
	// Expiry is when the id stops opening (second precision).
	Expiry time.Time
}

// Sealer seals and opens session ids with AES-256-GCM under a key derived
// once from the shared cookie secret (HKDF-SHA256), so every replica opens
// every id without a store lookup and nobody else can make or read one.
// Safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
	// nonces is where nonces come from: crypto/rand, or a fixed stream in
	// the fuzz test, so its seeds are the same in every fuzzing process.
	nonces io.Reader
}

// NewSealer derives the key from secret (the cookie secret, the same on
// every replica; at least session.MinSecretLen bytes).
func NewSealer(secret []byte) (*Sealer, error) {
	if len(secret) < session.MinSecretLen {
		return nil, fmt.Errorf("mcpsession: secret must be at least %d bytes, got %d", session.MinSecretLen, len(secret))
	}
	key, err := hkdf.Key(sha256.New, secret, nil, keyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("mcpsession: derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("mcpsession: cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("mcpsession: GCM: %w", err)
	}
	return &Sealer{aead: aead, nonces: rand.Reader}, nil
}

// Seal returns the id the client sees for c: "m1." and base64url (visible
// ASCII, as Mcp-Session-Id requires) of a random nonce and the encrypted
// claims. Two seals of the same claims differ.
func (s *Sealer) Seal(c Claims) (string, error) {
	plain := encodeClaims(c)
	if len(plain) > maxPlaintext {
		return "", fmt.Errorf("mcpsession: claims too long to seal (%d bytes, at most %d)", len(plain), maxPlaintext)
	}
	buf := make([]byte, nonceLen, nonceLen+len(plain)+tagLen)
	if _, err := io.ReadFull(s.nonces, buf); err != nil {
		return "", fmt.Errorf("mcpsession: nonce: %w", err)
	}
	buf = s.aead.Seal(buf, buf[:nonceLen], plain, []byte(idPrefix))
	out := make([]byte, len(idPrefix)+b64.EncodedLen(len(buf)))
	copy(out, idPrefix)
	b64.Encode(out[len(idPrefix):], buf)
	return string(out), nil
}

// Open returns the claims of an id Seal made with the same key, if it has
// not expired at now. Every failure wraps ErrUnknownSession.
func (s *Sealer) Open(id string, now time.Time) (Claims, error) {
	if len(id) > MaxIDLen || !strings.HasPrefix(id, idPrefix) {
		return Claims{}, fmt.Errorf("%w: not a sealed id", ErrUnknownSession)
	}
	body := id[len(idPrefix):]
	// The decoder skips \r and \n even in strict mode: an id has one
	// spelling, so only the base64url alphabet is accepted.
	for i := 0; i < len(body); i++ {
		if !isB64URL(body[i]) {
			return Claims{}, fmt.Errorf("%w: malformed", ErrUnknownSession)
		}
	}
	raw, err := b64.DecodeString(body)
	if err != nil || len(raw) < nonceLen+tagLen {
		return Claims{}, fmt.Errorf("%w: malformed", ErrUnknownSession)
	}
	plain, err := s.aead.Open(nil, raw[:nonceLen], raw[nonceLen:], []byte(idPrefix))
	if err != nil {
		return Claims{}, fmt.Errorf("%w: does not open", ErrUnknownSession)
	}
	c, ok := decodeClaims(plain)
	if !ok {
		return Claims{}, fmt.Errorf("%w: bad claims", ErrUnknownSession)
	}
	if !now.Before(c.Expiry) {
		return Claims{}, fmt.Errorf("%w: expired", ErrUnknownSession)
	}
	return c, nil
}

func isB64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// encodeClaims is the compact binary form: expiry (unix seconds, 8 bytes
// big endian), then owner, upstream, issuer and subject, each with a
// uvarint length.
func encodeClaims(c Claims) []byte {
	fields := [...]string{c.Owner, c.Upstream, c.Issuer, c.Subject}
	n := 8
	for _, f := range fields {
		n += binary.MaxVarintLen64 + len(f)
	}
	b := make([]byte, 8, n)
	binary.BigEndian.PutUint64(b, uint64(c.Expiry.Unix()))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

func decodeClaims(b []byte) (Claims, bool) {
	if len(b) < 8 {
		return Claims{}, false
	}
	c := Claims{Expiry: time.Unix(int64(binary.BigEndian.Uint64(b)), 0)}
	b = b[8:]
	for _, f := range [...]*string{&c.Owner, &c.Upstream, &c.Issuer, &c.Subject} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return Claims{}, false
		}
		*f = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return Claims{}, false
	}
	return c, true
}
