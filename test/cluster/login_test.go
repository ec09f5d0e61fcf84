package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/authn"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/weblogin"
)

// exampleServerName is the serverInfo name of the example MCP server: an
// initialize answered with it was answered by the app, not by the proxy.
const exampleServerName = "mcp-oidc-proxy-example"

// loginTimeout bounds one browser login or one MCP authorization.
const loginTimeout = 2 * time.Minute

// transportTo sends every request to addr whatever host the URL names, as
// a client that resolves the Service's cluster name would: the Host header
// stays the URL's.
func transportTo(addr string) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		ResponseHeaderTimeout: apiTimeout,
		MaxIdleConnsPerHost:   4,
	}
}

// target is one way to reach the MCP server from the host.
type target struct {
	name string
	base string // URL without path
	rt   http.RoundTripper
}

// targets are the Service (by its cluster name, through its ClusterIP),
// the external URL (the ingress in front of the Service) and each pod's
// protected port (by pod IP).
func (s *suite) targets() []target {
	out := []target{
		{name: "Service " + s.app.service + " as " + s.clusterURL, base: s.clusterURL, rt: transportTo(s.app.service)},
		{name: "external URL " + s.externalURL + " (an ingress in front of the Service)", base: s.externalURL, rt: &http.Transport{ResponseHeaderTimeout: apiTimeout}},
	}
	for i, addr := range s.app.podAddrs() {
		out = append(out, target{name: "pod " + s.app.pods[i].Name + " " + addr, base: "http://" + addr, rt: &http.Transport{ResponseHeaderTimeout: apiTimeout}})
	}
	return out
}

// serviceTargets are the targets through the Service.
func (s *suite) serviceTargets() []target { return s.targets()[:2] }

// waitServiceServes waits until kube-proxy routes the Service to the
// current pods only (waitServiceRouted) and the Service reaches the
// sidecars (a request without credentials gets the proxy's 401).
func (s *suite) waitServiceServes(t *testing.T) {
	t.Helper()
	s.waitServiceRouted(t)
	for _, tg := range s.serviceTargets() {
		waitServes(t, tg)
	}
}

// podTargets are the targets of the pods only.
func (s *suite) podTargets() []target { return s.targets()[2:] }

// response is an HTTP answer read to the end.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	b := strings.TrimSpace(string(r.body))
	if len(b) > 300 {
		b = b[:300] + "..."
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test-cluster","version":"v1"}}}`

// mcpInitialize posts an MCP initialize to <base>/mcp, with the session
// cookie if one is given.
func mcpInitialize(ctx context.Context, tg target, cookie *http.Cookie) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tg.base+"/mcp", strings.NewReader(initializeBody))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := (&http.Client{Transport: tg.rt}).Do(req)
	if err != nil {
		return response{}, fmt.Errorf("POST %s/mcp (%s): %w", tg.base, tg.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return response{}, fmt.Errorf("POST %s/mcp (%s): reading the body: %w", tg.base, tg.name, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// checkInitialize returns nil when the MCP server itself answered the
// initialize (the proxy let the cookie in and forwarded it).
func checkInitialize(ctx context.Context, tg target, cookie *http.Cookie) error {
	r, err := mcpInitialize(ctx, tg, cookie)
	if err != nil {
		return err
	}
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(exampleServerName)) {
		return fmt.Errorf("%s: initialize with the session cookie answered %s; want 200 from %s", tg.name, r, exampleServerName)
	}
	return nil
}

// Step 3: from the host, the Service and every pod refuse a request without
// credentials with 401 and the MCP challenge; a browser login through the
// Service gives a cookie that works on each pod.
func (s *suite) stepBrowserLogin(t *testing.T) {
	s.diagnoseOnFailure(t, s.appNS)
	ctx := context.Background()
	for _, tg := range s.targets() {
		r, err := mcpInitialize(ctx, tg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "resource_metadata=") {
			t.Errorf("%s without credentials answered %s (WWW-Authenticate %q); want 401 with a resource_metadata challenge",
				tg.name, r, r.header.Get("WWW-Authenticate"))
		} else {
			t.Logf("%s without credentials: 401, %s", tg.name, r.header.Get("WWW-Authenticate"))
		}
	}
	lctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	cookie, err := weblogin.Login(lctx, weblogin.Options{
		Provider:   s.idp,
		StartOn:    s.externalURL,
		CookieName: authn.DefaultInsecureCookieName,
	})
	if err != nil {
		t.Fatalf("browser login at %s (through the Service): %v", s.externalURL, err)
	}
	s.cookie = cookie
	t.Logf("browser login at %s (through the Service) gave a session cookie", s.externalURL)
	for _, tg := range s.targets() {
		if err := checkInitialize(ctx, tg, cookie); err != nil {
			t.Error(err)
		} else {
			t.Logf("%s: the session cookie works (initialize answered by %s)", tg.name, exampleServerName)
		}
	}
}

// Step 4: the official Go SDK client runs the façade's OAuth flow (dynamic
// registration, PKCE, login, consent, code exchange) through the Service
// and calls whoami; the MCP server sees the user.
func (s *suite) stepMCPClient(t *testing.T) {
	s.diagnoseOnFailure(t, s.appNS)
	ctx, cancel := context.WithTimeout(context.Background(), loginTimeout)
	defer cancel()
	c, err := mcpclient.Connect(ctx, mcpclient.Options{
		Endpoint:       s.externalURL + "/mcp",
		Login:          func(ctx context.Context, authURL string) (*url.URL, error) { return s.idp.Login(ctx, nil, authURL) },
		ClientName:     "test-cluster",
		AuthHTTPClient: &http.Client{Timeout: apiTimeout},
	})
	if err != nil {
		t.Fatalf("MCP client at %s/mcp (through the Service): %v", s.externalURL, err)
	}
	s.mcp = c
	if c.Browser.Authorizations() != 1 || c.Browser.Consents() != 1 {
		t.Errorf("authorizations %d, consents %d; want one each (registration, login, consent)", c.Browser.Authorizations(), c.Browser.Consents())
	}
	if err := checkWhoami(ctx, c.Session); err != nil {
		t.Fatal(err)
	}
	t.Logf("the SDK client authorized through the façade (1 consent) and whoami saw %s", oidcprovider.DemoEmail)
}

// checkWhoami calls whoami and checks that the MCP server saw the demo
// user and no credential.
func checkWhoami(ctx context.Context, session *mcp.ClientSession) error {
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		return fmt.Errorf("whoami: %w", err)
	}
	if res.IsError {
		return fmt.Errorf("whoami returned a tool error: %+v", res.Content)
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	var who mcpserver.WhoAmI
	if err := json.Unmarshal(raw, &who); err != nil {
		return fmt.Errorf("whoami result %s: %w", raw, err)
	}
	if got := who.Headers["X-Forwarded-Email"]; got != oidcprovider.DemoEmail {
		return fmt.Errorf("whoami saw X-Forwarded-Email %q (headers %v); want %s", got, who.Headers, oidcprovider.DemoEmail)
	}
	if len(who.Leaked) > 0 {
		return fmt.Errorf("credentials reached the MCP server: %v", who.Leaked)
	}
	return nil
}
