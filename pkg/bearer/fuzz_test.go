package bearer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
)

// FuzzJWTValidate feeds the validator tokens built from an arbitrary JOSE
// header, payload and signature. With sign set, the header and payload are
// signed with the trusted key (whatever alg the header claims), so the
// fuzzer reaches the header and claim checks behind the signature. A token
// that validates must carry an allowed asymmetric alg and the at+jwt type,
// verify under the trusted key, and carry the right issuer, audience,
// subject and an unexpired exp: "none", HMAC and type confusion never pass.
func FuzzJWTValidate(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256), Use: "sig"}
	now := time.Unix(1_800_000_000, 0)
	var v *bearer.JWTValidator
	v, err = bearer.NewJWTValidator(bearer.JWTOptions{
		Issuer: testIssuer, Audiences: []string{testResource}, Types: []string{"at+jwt"}, CacheSize: -1,
		Now: func() time.Time { return now },
		KeySet: func(context.Context) (*jose.JSONWebKeySet, error) {
			return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}, nil
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	claims, _ := json.Marshal(claimsAt(now))
	for _, h := range []string{
		`{"alg":"ES256","kid":"k1","typ":"at+jwt"}`, `{"alg":"ES256","kid":"k1","typ":"application/AT+JWT"}`,
		`{"alg":"ES256","kid":"k1","typ":"JWT"}`, `{"alg":"none","typ":"at+jwt"}`, `{"alg":"HS256","kid":"k1","typ":"at+jwt"}`,
		`{"alg":"ES256","ALG":"none","typ":"at+jwt"}`, `{"alg":"ES256","kid":"other","typ":"at+jwt"}`, `{"alg":"ES256","crit":["exp"],"typ":"at+jwt"}`,
	} {
		f.Add(h, string(claims), []byte{}, true)
		f.Add(h, string(claims), []byte("sig"), false)
	}
	f.Add(`{"alg":"ES256","typ":"at+jwt"}`, `{"iss":"https://issuer.example","sub":"x","aud":"https://mcp.example.com/mcp","exp":1e30}`, []byte{}, true)
	f.Fuzz(func(t *testing.T, header, payload string, sig []byte, sign bool) {
		input := b64raw(header) + "." + b64raw(payload)
		if sign {
			sig = es256(t, key, input)
		}
		raw := input + "." + base64.RawURLEncoding.EncodeToString(sig)
		tok, err := v.Validate(context.Background(), raw, bearer.Expectation{})
		if err != nil {
			if !errors.Is(err, bearer.ErrInvalidToken) {
				t.Fatalf("rejection %v is not ErrInvalidToken", err)
			}
			return
		}
		var h map[string]any
		if err := json.Unmarshal([]byte(header), &h); err != nil {
			t.Fatalf("accepted a token whose header is not a JSON object: %q", header)
		}
		if alg, _ := h["alg"].(string); !slices.Contains(bearer.DefaultAlgorithms(), jose.SignatureAlgorithm(alg)) {
			t.Fatalf("accepted alg %q (header %q)", alg, header)
		}
		if typ, _ := h["typ"].(string); !strings.EqualFold(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(typ)), "application/"), "at+jwt") {
			t.Fatalf("accepted typ %q", typ)
		}
		if !sign {
			// Only the trusted key can have produced an accepted signature.
			if !ecdsa.VerifyASN1(&key.PublicKey, digest(input), asn1Sig(sig)) {
				t.Fatalf("accepted a signature the trusted key did not make: %q", raw)
			}
		}
		if tok.Issuer != testIssuer || !slices.Contains(tok.Audience, testResource) || tok.Subject == "" {
			t.Fatalf("accepted claims iss=%q aud=%v sub=%q", tok.Issuer, tok.Audience, tok.Subject)
		}
		if tok.Expiry.Before(now.Add(-bearer.DefaultSkew)) {
			t.Fatalf("accepted a token that expired at %v", tok.Expiry)
		}
	})
}

func b64raw(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func digest(input string) []byte {
	sum := sha256.Sum256([]byte(input))
	return sum[:]
}

// es256 is a JWS ES256 signature (r||s, 32 bytes each) over input.
func es256(t *testing.T, k *ecdsa.PrivateKey, input string) []byte {
	r, s, err := ecdsa.Sign(rand.Reader, k, digest(input))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

// asn1Sig converts a 64-byte JWS ES256 signature for ecdsa.VerifyASN1.
func asn1Sig(sig []byte) []byte {
	if len(sig) != 64 {
		return nil
	}
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	enc := func(n *big.Int) []byte {
		b := n.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return append([]byte{0x02, byte(len(b))}, b...)
	}
	body := append(enc(r), enc(s)...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

// FuzzChallenge: whatever a value holds (a reason, a scope list, a URL built
// from a request), the WWW-Authenticate value stays one header line and
// parses back into exactly the parameters given, with each value intact
// but for the control characters a header cannot carry. No value can close
// its quotes and add a parameter of its own.
func FuzzChallenge(f *testing.F) {
	f.Add("invalid_token", `bad", error="insufficient_scope`, "https://mcp.example/.well-known/oauth-protected-resource")
	f.Add("", "line\r\nSet-Cookie: x=1", `\"`)
	f.Add("\\", "\x00\x7f\t", "ü\xff")
	f.Fuzz(func(t *testing.T, errCode, desc, metadata string) {
		v := bearer.Challenge("error", errCode, "error_description", desc, "resource_metadata", metadata)
		if strings.ContainsFunc(v, func(r rune) bool { return r == '\r' || r == '\n' || r == 0 }) {
			t.Fatalf("challenge %q contains CR, LF or NUL", v)
		}
		got, err := parseChallenge(v)
		if err != nil {
			t.Fatalf("challenge %q does not parse: %v", v, err)
		}
		want := [][2]string{{"error", dropControls(errCode)}, {"error_description", dropControls(desc)}, {"resource_metadata", dropControls(metadata)}}
		if !slices.Equal(got, want) {
			t.Fatalf("challenge %q parses as %q, want %q", v, got, want)
		}
	})
}

func dropControls(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\t' || (c >= 0x20 && c != 0x7f) {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// parseChallenge is a strict RFC 9110 parser for `Bearer name="v", ...`.
func parseChallenge(v string) ([][2]string, error) {
	rest, ok := strings.CutPrefix(v, "Bearer ")
	if !ok {
		return nil, errors.New("not a Bearer challenge")
	}
	var out [][2]string
	for rest != "" {
		name, after, ok := strings.Cut(rest, "=")
		if !ok || name == "" || strings.ContainsAny(name, " \t\",=\\") {
			return nil, errors.New("bad parameter name")
		}
		if !strings.HasPrefix(after, `"`) {
			return nil, errors.New("value is not a quoted-string")
		}
		var val strings.Builder
		i := 1
		for ; i < len(after) && after[i] != '"'; i++ {
			if after[i] == '\\' {
				i++
				if i == len(after) {
					return nil, errors.New("dangling escape")
				}
			}
			val.WriteByte(after[i])
		}
		if i == len(after) {
			return nil, errors.New("unterminated quoted-string")
		}
		out = append(out, [2]string{name, val.String()})
		rest = after[i+1:]
		if rest != "" {
			if rest, ok = strings.CutPrefix(rest, ", "); !ok || rest == "" {
				return nil, errors.New("bad separator")
			}
		}
	}
	return out, nil
}

// FuzzAuthorizationHeader: the validator only ever sees a single non-empty
// bearer token without separators, requests without bearer credentials go
// to the fallback, and a malformed header is a 401 invalid_token, never a
// pass.
func FuzzAuthorizationHeader(f *testing.F) {
	f.Add("Bearer abc.def.ghi", "")
	f.Add("bearer  tok ", "")
	f.Add("Bearer a b", "")
	f.Add("Basic dXNlcjpwYXNz", "Bearer x")
	f.Add("Bearer x", "Bearer y")
	f.Add("Bearer", "")
	f.Add("Bearer a,b", "")
	f.Fuzz(func(t *testing.T, first, second string) {
		var seen []string
		validator := validatorFunc(func(_ context.Context, raw string) (*bearer.Token, error) {
			seen = append(seen, raw)
			return &bearer.Token{Subject: "s"}, nil
		})
		rs := bearer.NewResourceServer(bearer.ResourceOptions{
			Validator: validator, ResourceMetadataURL: func(*http.Request) string { return "https://mcp.example/prm" },
		})
		var next, fallback int
		h := rs.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next++
			if r.Header.Get("Authorization") != "" {
				t.Fatal("the Authorization header reached the upstream handler")
			}
		}), http.HandlerFunc(func(http.ResponseWriter, *http.Request) { fallback++ }))
		r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		r.Header["Authorization"] = []string{first}
		if second != "" {
			r.Header["Authorization"] = append(r.Header["Authorization"], second)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for _, tok := range seen {
			if tok == "" || strings.ContainsAny(tok, " \t,") {
				t.Fatalf("validator got token %q", tok)
			}
		}
		switch {
		case next+fallback == 1:
		case rec.Code == http.StatusUnauthorized && strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`):
		default:
			t.Fatalf("headers %q, %q: next=%d fallback=%d status=%d", first, second, next, fallback, rec.Code)
		}
		if next == 1 && len(seen) != 1 {
			t.Fatalf("passed without validating exactly one token: %q", seen)
		}
	})
}
