package attacks

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

const (
	cookieName   = "mcp-oidc-session"
	cookieSecret = "attacks-cookie-secret-0123456789abcdefghijklmnop"
	// redirectURI is the loopback redirect URI (RFC 8252) the test clients
	// register. Nothing listens there: codes are read from the redirect.
	redirectURI = "http://127.0.0.1/attack-cb"
	waitFor     = 20 * time.Second
	// mallory is a second user at the provider: the attacker.
	malloryID, malloryName, malloryPassword = "mallory", "mallory@example.com", "mallory-password"
	// leaver and mover are users whose standing at the provider a case
	// changes (disabled, moved out of the allowed group); no other case
	// uses them.
	leaverID, leaverName, leaverPassword = "leaver", "leaver@example.com", "leaver-password"
	moverID, moverName, moverPassword    = "mover", "mover@example.com", "mover-password"
	// allowedGroup is replica C's authz.allowed_groups; the demo user,
	// leaver and mover start in it.
	allowedGroup = "mcp-users"
	// loginBurstC and bodyTimeoutC are replica C's
	// rate_limit.login_burst and request_body_timeout.
	loginBurstC    = 2
	bodyTimeoutC   = time.Second
	initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"attacker","version":"v1"}}}`
)

// ---------------------------------------------------------------------------
// The table's shape.

// attack is one row: send performs the attack against the fixture and
// returns the proxy's last answer; want is the exact rejection. Appending a
// row is all a new attack needs.
type attack struct {
	name string
	send func(t *testing.T, f *fixture) response
	want want
}

// Values of want.challenge and want.location with a special meaning.
const (
	// noErrorChallenge: a Bearer challenge without an error parameter (no
	// credentials were sent).
	noErrorChallenge = "(no error)"
	// anyLocation: the case's check asserts the Location itself.
	anyLocation = "(checked by the case)"
	// anyStatus: the case's check asserts the status itself.
	anyStatus = -1
)

// want is what the proxy must answer. Every field that is set is asserted;
// location is always asserted, so a case that leaves it empty asserts that
// the response redirects nowhere.
type want struct {
	status int
	// apiCode is the proxy's JSON error code ({"error":{"code":...}}).
	apiCode string
	// oauthError is an OAuth JSON error ({"error":"invalid_grant"}).
	oauthError string
	// challenge is the error of the WWW-Authenticate Bearer challenge, or
	// noErrorChallenge; its resource_metadata is always checked too.
	challenge string
	// reason is the challenge's error_description.
	reason string
	// location is the exact Location header ("" = none), or anyLocation.
	location string
	// body must occur in the response body.
	body string
	// upstream: the request must reach the MCP server (spoofing cases,
	// where the point is what arrives). Otherwise nothing may reach it.
	upstream bool
	// check runs last, for what the fields cannot say; reached is what
	// arrived at the MCP server during the case.
	check func(t *testing.T, f *fixture, r response, reached []seen)
}

// TestAttacks runs the table against one stack. Cases run one after
// another: the upstream's request log tells which case reached it.
func TestAttacks(t *testing.T) {
	f := newFixture(t)
	seen := map[string]bool{}
	for _, tc := range cases() {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			before := f.up.count()
			r := tc.send(t, f)
			reached := f.up.since(before)
			f.assert(t, tc.want, r, reached)
		})
	}
	if len(seen) < 40 {
		t.Errorf("the attack table has %d cases, want at least 40", len(seen))
	}
}

// assert checks r and what reached the upstream against w.
func (f *fixture) assert(t *testing.T, w want, r response, reached []seen) {
	t.Helper()
	if w.status != anyStatus && r.Status != w.status {
		t.Errorf("status = %d, want %d (%s)", r.Status, w.status, r)
	}
	if w.upstream && len(reached) == 0 {
		t.Errorf("the request did not reach the MCP server")
	}
	if !w.upstream && len(reached) > 0 {
		t.Errorf("the MCP server saw %d request(s), first %s", len(reached), reached[0].Path)
	}
	if w.location != anyLocation {
		if got := r.Header.Get("Location"); got != w.location {
			t.Errorf("Location = %q, want %q", got, w.location)
		}
	}
	if w.apiCode != "" || w.oauthError != "" {
		api, oauth := errorCodes(r)
		if w.apiCode != "" && api != w.apiCode {
			t.Errorf("error code = %q, want %q (%s)", api, w.apiCode, r)
		}
		if w.oauthError != "" && oauth != w.oauthError {
			t.Errorf("OAuth error = %q, want %q (%s)", oauth, w.oauthError, r)
		}
	}
	if w.challenge != "" {
		p, err := challengeParams(r.Header.Get("WWW-Authenticate"))
		switch {
		case err != nil:
			t.Errorf("WWW-Authenticate: %v", err)
		case w.challenge == noErrorChallenge && p["error"] != "":
			t.Errorf("challenge error = %q, want none", p["error"])
		case w.challenge != noErrorChallenge && p["error"] != w.challenge:
			t.Errorf("challenge error = %q, want %q", p["error"], w.challenge)
		case p["resource_metadata"] != f.prm:
			t.Errorf("challenge resource_metadata = %q, want %q", p["resource_metadata"], f.prm)
		case w.reason != "" && p["error_description"] != w.reason:
			t.Errorf("challenge error_description = %q, want %q", p["error_description"], w.reason)
		}
	}
	if w.body != "" && !strings.Contains(string(r.Body), w.body) {
		t.Errorf("body lacks %q: %s", w.body, r)
	}
	if w.check != nil {
		w.check(t, f, r, reached)
	}
}

// errorCodes returns the proxy's error code and the OAuth error of a JSON
// error body (either may be empty).
func errorCodes(r response) (api, oauth string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(r.Body, &m) != nil {
		return "", ""
	}
	var detail struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(m["error"], &oauth) != nil && json.Unmarshal(m["error"], &detail) == nil {
		api = detail.Code
	}
	return api, oauth
}

// challengeParams parses a Bearer WWW-Authenticate value.
func challengeParams(v string) (map[string]string, error) {
	rest, ok := strings.CutPrefix(v, "Bearer")
	if !ok {
		return nil, fmt.Errorf("%q is not a Bearer challenge", v)
	}
	out := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		name, after, ok := strings.Cut(rest, `="`)
		if !ok {
			return nil, fmt.Errorf("%q: malformed", v)
		}
		var val strings.Builder
		i := 0
		for ; i < len(after) && after[i] != '"'; i++ {
			if after[i] == '\\' && i+1 < len(after) {
				i++
			}
			val.WriteByte(after[i])
		}
		if i == len(after) {
			return nil, fmt.Errorf("%q: unterminated value", v)
		}
		out[strings.TrimSpace(name)] = val.String()
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(after[i+1:]), ","))
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// The protected app.

// seen is one request that reached the MCP server, with the body it
// carried (read whole before the MCP server sees it).
type seen struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// upstream is the official-SDK MCP server at /mcp plus /headers (echoes
// nothing, records everything) and a public page, behind a recorder of
// every request that reaches it.
type upstream struct {
	URL  string
	mu   sync.Mutex
	reqs []seen
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	ln, err := stack.Listen()
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{}
	mux := stack.UpstreamMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }
	mux.HandleFunc("/headers", ok)
	mux.HandleFunc("/public/", ok)
	var stop func()
	u.URL, stop = stack.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every body that reaches the server is small: the cases that send
		// large ones assert that they never arrive.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "upstream recorder: "+err.Error(), http.StatusBadRequest)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		u.mu.Unlock()
		if err == nil {
			mux.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(stop)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// since returns the requests after the first n.
func (u *upstream) since(n int) []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs[n:]...)
}

// ---------------------------------------------------------------------------
// The stack.

// fixture is one provider, one Redis, one upstream and two proxy replicas
// sharing them behind the external URL of replica A, plus what an ordinary
// user obtained from it before the attacks start. A third replica, C, shares
// them too but has its own clock, path to the provider and tight limits, so
// that the cases that move time, cut the provider off or exhaust a rate
// limit cannot disturb the others.
type fixture struct {
	idp   *oidcprovider.Provider
	redis *redisserver.Server
	up    *upstream
	a, b  *stack.Proxy
	c     *stack.Proxy
	// p is replica P, the only one with a tool policy (policyRules,
	// policyMaxBody); its rows are in policy_test.go.
	p *stack.Proxy
	// mcpSession is an MCP session of the demo user's cookie at the MCP
	// server through replica P, made on first use.
	mcpSession string
	// clock is replica C's clock; idpDown cuts C off from the provider.
	clock   *fakeclock.Shifted
	idpDown *stack.Outage
	public  string // external URL (replica A's address)
	host    string // its host:port, the Host header of every request
	// resource and prm are the MCP endpoint and its metadata URL.
	resource, prm string
	// key signs the façade's tokens (configured as oauth.signing_keys);
	// kid is its key ID in the JWKS.
	key *ecdsa.PrivateKey
	kid string
	// client and other are two registered public clients.
	client, other string
	// cookie is a browser session of the demo user.
	cookie *http.Cookie
	// mallory is a browser session of the attacker, made on first use.
	mallory *http.Cookie
	// assertion is an identity assertion the proxy sent to the MCP server.
	assertion string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		// ID tokens outlive the largest clock shift of replica C, which
		// validates those a refresh at the provider returns.
		idp: oidcprovider.Start(t, oidcprovider.Options{IDTokenLifetime: 60 * 24 * time.Hour, Users: []oidcprovider.User{
			{ID: oidcprovider.DemoUserID, Username: oidcprovider.DemoUsername, Password: oidcprovider.DemoPassword,
				Email: oidcprovider.DemoEmail, EmailVerified: true, GivenName: "Demo", FamilyName: "User", Groups: oidcprovider.DemoGroups()},
			{ID: malloryID, Username: malloryName, Password: malloryPassword, Email: malloryName, EmailVerified: true, Groups: []string{"outsiders"}},
			{ID: leaverID, Username: leaverName, Password: leaverPassword, Email: leaverName, EmailVerified: true, Groups: []string{allowedGroup}},
			{ID: moverID, Username: moverName, Password: moverPassword, Email: moverName, EmailVerified: true, Groups: []string{allowedGroup}},
		}}),
		redis:   redisserver.Start(t),
		up:      startUpstream(t),
		clock:   &fakeclock.Shifted{},
		idpDown: &stack.Outage{Base: http.DefaultTransport},
	}
	var err error
	if f.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(f.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	thumb, err := (&jose.JSONWebKey{Key: &f.key.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	f.kid = base64.RawURLEncoding.EncodeToString(thumb)

	// start runs a replica; o.Flags returns the flags it adds to the
	// shared ones (later flags win).
	start := func(o stack.ProxyOptions) *stack.Proxy {
		extra := o.Flags
		o.Flags = func(listen, admin string) []string {
			return append(append(stack.Flags(listen, admin, f.up.URL, f.idp.Issuer()),
				"--session-store", "redis", "--redis-url", f.redis.URL(),
				"--session-cookie-secret", cookieSecret,
				"--public-paths", "/public/*",
				"--oauth-signing-keys", keyPEM,
				"--oauth-identity-assertion",
				"--oauth-scopes", "mcp:tools,offline_access",
				// Families keep the provider's refresh token, so that
				// refreshes recheck the user there.
				"--oidc-scopes", "openid,profile,email,offline_access",
				// The whole table comes from one address: A and B must
				// not run out of logins or registrations (C has the
				// tight limits its cases exhaust).
				"--oauth-registrations-per-minute", "1000",
				"--rate-limit-logins-per-minute", "6000", "--rate-limit-login-burst", "1000",
				// Every case that logs in adds a session of the demo
				// user; none may evict the fixture's.
				"--session-max-per-user", "0",
			), extra(listen, admin)...)
		}
		o.Timeout = waitFor
		p, err := stack.StartProxy(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := p.Stop(); err != nil {
				t.Errorf("replica stopped with %v", err)
			}
		})
		return p
	}
	none := func(string, string) []string { return nil }
	f.a = start(stack.ProxyOptions{Flags: none})
	f.public = f.a.URL
	external := func(string, string) []string { return []string{"--external-url", f.public} }
	f.b = start(stack.ProxyOptions{Flags: external})
	f.c = start(stack.ProxyOptions{
		Now: f.clock.Now, HTTPClient: &http.Client{Transport: f.idpDown, Timeout: waitFor},
		Flags: func(listen, admin string) []string {
			return append(external(listen, admin),
				"--authz-allowed-groups", allowedGroup,
				"--rate-limit-logins-per-minute", "1", "--rate-limit-login-burst", strconv.Itoa(loginBurstC),
				"--oauth-registrations-per-minute", "1",
				"--request-body-timeout", bodyTimeoutC.String())
		},
	})
	f.p = start(stack.ProxyOptions{Flags: func(listen, admin string) []string {
		return append(external(listen, admin),
			"--policy-rules", policyRules, "--policy-max-body-bytes", strconv.Itoa(policyMaxBody))
	}})
	f.host = strings.TrimPrefix(f.public, "http://")
	f.resource = f.public + "/mcp"
	f.prm = f.public + "/.well-known/oauth-protected-resource/mcp"

	f.client = f.registerClient(t)
	f.other = f.registerClient(t)
	f.cookie = f.browserLogin(t, nil, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
	f.setupChecks(t)
	f.session(t)
	return f
}

// setupChecks proves the fixture works for the ordinary user, so that every
// rejection below is a rejection of the attack and not of a broken stack,
// and captures an identity assertion.
func (f *fixture) setupChecks(t *testing.T) {
	t.Helper()
	tok := f.tokens(t, f.client)
	before := f.up.count()
	if r := f.send(t, f.req(http.MethodGet, "/headers", nil, bearer(tok.AccessToken))); r.Status != http.StatusOK {
		t.Fatalf("an issued access token is refused: %s", r)
	}
	if r := f.send(t, f.req(http.MethodGet, "/headers", nil, bearer(f.mint(t, nil)))); r.Status != http.StatusOK {
		t.Fatalf("a token minted with the signing key is refused, so JWT cases would prove nothing: %s", r)
	}
	if r := f.send(t, f.req(http.MethodGet, "/headers", nil, withCookie(f.cookie))); r.Status != http.StatusOK {
		t.Fatalf("the browser session is refused: %s", r)
	}
	if r := f.send(t, f.req(http.MethodGet, "/public/page", nil)); r.Status != http.StatusOK {
		t.Fatalf("the public path is not public: %s", r)
	}
	reached := f.up.since(before)
	if len(reached) != 4 {
		t.Fatalf("the MCP server saw %d of 4 admitted requests", len(reached))
	}
	f.assertion = reached[0].Header.Get("X-Mcp-Identity-Assertion")
	if f.assertion == "" {
		t.Fatal("no identity assertion reached the MCP server")
	}
}

// ---------------------------------------------------------------------------
// Requests.

// response is a fully read HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// option changes a request before it is sent.
type option func(*http.Request)

func header(k, v string) option {
	return func(r *http.Request) { r.Header[k] = append(r.Header[k], v) }
}

func bearer(tok string) option { return header("Authorization", "Bearer "+tok) }

func withCookie(c *http.Cookie) option { return func(r *http.Request) { r.AddCookie(c) } }

func form() option {
	return header("Content-Type", "application/x-www-form-urlencoded")
}

// onB sends the request to replica B (still under the external URL).
func (f *fixture) onB() option { return on(f.b) }

// onC sends the request to replica C (still under the external URL).
func (f *fixture) onC() option { return on(f.c) }

func on(p *stack.Proxy) option {
	return func(r *http.Request) { r.URL.Host = strings.TrimPrefix(p.URL, "http://") }
}

// withHost sends the request with Host h.
func withHost(h string) option { return func(r *http.Request) { r.Host = h } }

// req builds a request for path (with query) on replica A under the
// external URL's Host.
func (f *fixture) req(method, pathQuery string, body io.Reader, opts ...option) *http.Request {
	r, err := http.NewRequest(method, f.public+pathQuery, body)
	if err != nil {
		panic(err) // the cases' paths are constants
	}
	r.Host = f.host
	for _, o := range opts {
		o(r)
	}
	return r
}

// send sends r without following redirects.
func (f *fixture) send(t *testing.T, r *http.Request) response {
	t.Helper()
	client := &http.Client{Timeout: waitFor, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL.Path, err)
	}
	return readResponse(t, resp)
}

func readResponse(t *testing.T, resp *http.Response) response {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// raw sends "GET <target> HTTP/1.1" with target exactly as given, for path
// tricks net/url would clean or escape.
func (f *fixture) raw(t *testing.T, target string, headers ...string) response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", f.host, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitFor))
	msg := "GET " + target + " HTTP/1.1\r\nHost: " + f.host + "\r\nConnection: close\r\n"
	for _, h := range headers {
		msg += h + "\r\n"
	}
	if _, err := io.WriteString(conn, msg+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", target, err)
	}
	return readResponse(t, resp)
}

// trickle posts a form body to path on p one byte every trickleEvery,
// at most trickleBytes of a declared trickleBytes+1 (so the body never
// completes), and returns the proxy's answer and how long after the headers
// it came. The connection is closed as soon as the answer is read.
func (f *fixture) trickle(t *testing.T, p *stack.Proxy, path string) (response, time.Duration) {
	t.Helper()
	const trickleBytes, trickleEvery = 40, 250 * time.Millisecond // 10 s at most
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(p.URL, "http://"), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Bounded: the trickle's length and then the proxy's timeout.
	_ = conn.SetDeadline(time.Now().Add(trickleBytes*trickleEvery + bodyTimeoutC + time.Second))
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", path, f.host, trickleBytes+1)
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	answered := make(chan struct{})
	go func() {
		tick := time.NewTicker(trickleEvery)
		defer tick.Stop()
		for range trickleBytes {
			select {
			case <-answered:
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(conn, "a"); err != nil {
				return // the proxy closed the connection
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	close(answered)
	if err != nil {
		t.Fatalf("trickled POST %s: %v", path, err)
	}
	return readResponse(t, resp), time.Since(start)
}

// postForm posts values to path on replica A.
func (f *fixture) postForm(t *testing.T, path string, values url.Values, opts ...option) response {
	t.Helper()
	return f.send(t, f.req(http.MethodPost, path, strings.NewReader(values.Encode()), append([]option{form()}, opts...)...))
}

// mcpPost sends the MCP initialize request with opts.
func (f *fixture) mcpPost(t *testing.T, opts ...option) response {
	t.Helper()
	opts = append([]option{header("Content-Type", "application/json"), header("Accept", "application/json, text/event-stream")}, opts...)
	return f.send(t, f.req(http.MethodPost, "/mcp", strings.NewReader(initializeBody), opts...))
}

// ---------------------------------------------------------------------------
// OAuth steps as a client and a browser take them.

// register sends a dynamic client registration.
func (f *fixture) register(t *testing.T, metadata map[string]any, opts ...option) response {
	t.Helper()
	b, err := json.Marshal(metadata)
	if err != nil {
		t.Fatal(err)
	}
	return f.send(t, f.req(http.MethodPost, "/oauth2/register", strings.NewReader(string(b)), append([]option{header("Content-Type", "application/json")}, opts...)...))
}

// registerClient registers a public client with redirectURI.
func (f *fixture) registerClient(t *testing.T) string {
	t.Helper()
	return f.registerRedirects(t, redirectURI)
}

// registerRedirects registers a public client with the redirect URIs.
func (f *fixture) registerRedirects(t *testing.T, uris ...string) string {
	t.Helper()
	return registered(t, f.register(t, map[string]any{"redirect_uris": uris, "token_endpoint_auth_method": "none", "client_name": "attack table"}))
}

// registered returns the client ID of a successful registration.
func registered(t *testing.T, r response) string {
	t.Helper()
	var m struct {
		ClientID string `json:"client_id"`
	}
	if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &m) != nil || m.ClientID == "" {
		t.Fatalf("registration: %s", r)
	}
	return m.ClientID
}

// authorizeQuery is a valid authorization request for client with the
// verifier's S256 challenge.
func (f *fixture) authorizeQuery(client, verifier string) url.Values {
	return url.Values{
		"client_id": {client}, "redirect_uri": {redirectURI}, "response_type": {"code"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
		"state": {"client-state"}, "resource": {f.resource}, "scope": {"mcp:tools offline_access"},
	}
}

// code runs the user's part of the flow (login at the provider as the demo
// user, consent) for client and returns the authorization code.
func (f *fixture) code(t *testing.T, client, verifier string) string {
	t.Helper()
	return f.codeAs(t, client, verifier, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
}

// codeAs is code for another user of the provider.
func (f *fixture) codeAs(t *testing.T, client, verifier, user, password string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	b := &mcpclient.Browser{Login: func(ctx context.Context, u string) (*url.URL, error) {
		return f.idp.LoginAs(ctx, nil, u, user, password)
	}, RedirectURI: redirectURI}
	res, err := b.Fetch(ctx, &auth.AuthorizationArgs{URL: f.public + "/oauth2/authorize?" + f.authorizeQuery(client, verifier).Encode()})
	if err != nil {
		t.Fatalf("authorization: %v", err)
	}
	return res.Code
}

// codeForm is the token request redeeming code.
func codeForm(client, code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {redirectURI}}
}

// tokenResponse is a successful token response.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// tokens runs the whole flow for client and returns its tokens.
func (f *fixture) tokens(t *testing.T, client string) tokenResponse {
	t.Helper()
	return f.tokensAs(t, client, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
}

// tokensAs is tokens for another user of the provider.
func (f *fixture) tokensAs(t *testing.T, client, user, password string) tokenResponse {
	t.Helper()
	v := oauth2.GenerateVerifier()
	return decodeTokens(t, f.postForm(t, "/oauth2/token", codeForm(client, f.codeAs(t, client, v, user, password), v)))
}

// decodeTokens decodes a successful token response.
func decodeTokens(t *testing.T, r response) tokenResponse {
	t.Helper()
	var tok tokenResponse
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &tok) != nil || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token exchange: %s", r)
	}
	return tok
}

// refreshForm is the token request refreshing rt for the main client.
func (f *fixture) refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "client_id": {f.client}, "refresh_token": {rt}}
}

// mint signs claims (valid access token claims for the demo user, changed
// by mutate) with the façade's key, as the façade would.
func (f *fixture) mint(t *testing.T, mutate func(claims map[string]any)) string {
	t.Helper()
	return f.sign(t, f.key, f.kid, jose.ES256, "at+jwt", mutate)
}

// sign signs access token claims changed by mutate with key under kid.
func (f *fixture) sign(t *testing.T, key any, kid string, alg jose.SignatureAlgorithm, typ string, mutate func(map[string]any)) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": f.public, "sub": oidcprovider.DemoUserID, "aud": f.resource, "client_id": f.client,
		"scope": "mcp:tools", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString([]byte(t.Name())),
	}
	if mutate != nil {
		mutate(claims)
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unsigned is a compact JWS with the given header and valid claims and an
// empty signature ("alg": "none").
func (f *fixture) unsigned(t *testing.T, hdr map[string]any) string {
	t.Helper()
	tok := strings.Split(f.mint(t, nil), ".")
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + tok[1] + "."
}

// ---------------------------------------------------------------------------
// Browser login.

// browserLogin logs user in through /oauth2/start with a jar (pre-seeded
// by the caller, e.g. with a planted cookie) and returns the new session
// cookie.
func (f *fixture) browserLogin(t *testing.T, jar http.CookieJar, user, password string) *http.Cookie {
	t.Helper()
	r := f.loginWithReturn(t, jar, "/", user, password)
	if r.Status != http.StatusFound || r.Header.Get("Location") != "/" {
		t.Fatalf("login callback: %s Location %q", r, r.Header.Get("Location"))
	}
	c := sessionCookieFrom(r.Header)
	if c == nil || c.Value == "" {
		t.Fatalf("login set no session cookie: %q", r.Header.Values("Set-Cookie"))
	}
	return &http.Cookie{Name: c.Name, Value: c.Value}
}

// loginWithReturn starts a login with rd as the return URL, logs in at the
// provider and returns the proxy's answer to the callback.
func (f *fixture) loginWithReturn(t *testing.T, jar http.CookieJar, rd, user, password string) response {
	t.Helper()
	cb, client := f.startLogin(t, jar, rd, user, password)
	return f.send(t, withJar(client, f.req(http.MethodGet, cb.RequestURI(), nil)))
}

// startLogin starts a login and logs in at the provider; it returns the
// callback URL (not yet delivered) and the browser's client.
func (f *fixture) startLogin(t *testing.T, jar http.CookieJar, rd, user, password string) (*url.URL, *http.Client) {
	t.Helper()
	if jar == nil {
		jar = newJar(t)
	}
	client := &http.Client{Jar: jar, Timeout: waitFor, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(f.req(http.MethodGet, "/oauth2/start?rd="+url.QueryEscape(rd), nil))
	if err != nil {
		t.Fatal(err)
	}
	start := readResponse(t, resp)
	authURL := start.Header.Get("Location")
	if start.Status != http.StatusFound || !strings.HasPrefix(authURL, f.idp.Issuer()+"/") {
		t.Fatalf("login start: %s Location %q", start, authURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cb, err := f.idp.LoginAs(ctx, nil, authURL, user, password)
	if err != nil {
		t.Fatalf("provider login: %v", err)
	}
	return cb, client
}

// withJar attaches the jar's cookies for the external URL to r; send does
// not use a jar, so the case sees the raw Set-Cookie answer.
func withJar(client *http.Client, r *http.Request) *http.Request {
	u, _ := url.Parse("http://" + r.Host)
	for _, c := range client.Jar.Cookies(u) {
		r.AddCookie(c)
	}
	return r
}

func newJar(t *testing.T) http.CookieJar {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return jar
}

// sessionCookieFrom returns the session cookie a response sets, if any.
func sessionCookieFrom(h http.Header) *http.Cookie {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Replica C's clock and path to the provider.

// shift moves replica C's clock d ahead of real time until the case ends.
func (f *fixture) shift(t *testing.T, d time.Duration) {
	t.Helper()
	f.clock.Set(d)
	t.Cleanup(func() { f.clock.Set(0) })
}

// cutOffProvider makes the provider unreachable for replica C until the
// case ends.
func (f *fixture) cutOffProvider(t *testing.T) {
	t.Helper()
	f.idpDown.SetDown(true)
	t.Cleanup(func() { f.idpDown.SetDown(false) })
}

// revokedUpdates is how many updates of its local revoked set (pub/sub
// messages and reloads) replica p has received so far.
func revokedUpdates(t *testing.T, p *stack.Proxy) float64 {
	t.Helper()
	mfs, err := p.Srv.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "mcp_oidc_proxy_cache_invalidations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cache" && l.GetValue() == "revoked" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// awaitRevokedUpdate waits until p's revoked set changed since it read
// before: a revocation made on another replica reaches it through Redis
// pub/sub, normally within milliseconds and within oauth.DefaultRevokedReload
// at worst (pkg/oauth/revoked.go). Waiting on the set rather than retrying
// the request keeps the token from reaching the MCP server meanwhile.
func awaitRevokedUpdate(t *testing.T, p *stack.Proxy, before float64) {
	t.Helper()
	if !waitfor.Poll(oauth.DefaultRevokedReload+time.Second, waitfor.Interval, func() bool { return revokedUpdates(t, p) > before }) {
		t.Fatalf("replica heard of no revocation within %s", oauth.DefaultRevokedReload)
	}
}
