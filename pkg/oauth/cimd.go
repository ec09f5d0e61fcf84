package oauth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// CIMD defaults (client ID metadata documents, draft-ietf-oauth-client-id-
// metadata-document, adopted by the MCP 2025-11-25 revision).
const (
	DefaultCIMDTimeout  = 5 * time.Second
	DefaultCIMDMaxBytes = 5 << 10
	DefaultCIMDCacheTTL = 5 * time.Minute
)

// Resolver resolves host names; *net.Resolver satisfies it. Tests inject one
// to point a public-looking name at a private address.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CIMDOptions configures fetching of client ID metadata documents. The fetch
// is made to a URL chosen by an unauthenticated caller, so it is locked down
// against SSRF: only public addresses, the resolved address is the one
// dialled, no redirects, small and quick.
type CIMDOptions struct {
	// Disabled turns client ID metadata documents off (metadata then says
	// client_id_metadata_document_supported: false).
	Disabled bool
	// AllowPrivateAddresses lets documents be fetched from private, loopback
	// and link-local addresses. For tests and fully internal deployments.
	AllowPrivateAddresses bool
	// AllowedHosts are host names that may resolve to non-public addresses.
	AllowedHosts []string
	// Timeout bounds the whole fetch; default DefaultCIMDTimeout.
	Timeout time.Duration
	// MaxBytes bounds the document; default DefaultCIMDMaxBytes.
	MaxBytes int64
	// CacheTTL is how long a fetched document is reused (in the Store, so
	// all replicas share it); default DefaultCIMDCacheTTL.
	CacheTTL time.Duration
	// TLSConfig overrides the TLS client configuration (custom roots).
	TLSConfig *tls.Config
	// Resolver overrides DNS resolution; default net.DefaultResolver.
	Resolver Resolver
}

// errCIMD marks every reason a metadata document is not accepted.
var errCIMD = errors.New("oauth: client metadata document refused")

// errForbiddenAddress means the document's host resolves to an address the
// SSRF policy refuses.
var errForbiddenAddress = errors.New("oauth: address not allowed for client metadata documents")

// cimdCache is where fetched metadata documents are kept for
// CIMDOptions.CacheTTL (implemented by session.Values).
type cimdCache interface {
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Get(ctx context.Context, key string) ([]byte, error)
}

type cimdFetcher struct {
	opts  CIMDOptions
	store cimdCache
	now   func() time.Time
	http  *http.Client
}

func newCIMDFetcher(opts CIMDOptions, store cimdCache, now func() time.Time) (*cimdFetcher, error) {
	setDefault(&opts.Timeout, DefaultCIMDTimeout)
	setDefault(&opts.CacheTTL, DefaultCIMDCacheTTL)
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultCIMDMaxBytes
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	f := &cimdFetcher{opts: opts, store: store, now: now}
	transport := &http.Transport{
		Proxy:                 nil, // never through an environment proxy: it would bypass the address checks
		DialContext:           f.dial,
		TLSClientConfig:       opts.TLSConfig,
		TLSHandshakeTimeout:   opts.Timeout,
		ResponseHeaderTimeout: opts.Timeout,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	f.http = &http.Client{
		Transport: transport,
		Timeout:   opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // redirects are refused below as a non-200 status
		},
	}
	return f, nil
}

// addrAllowed is the SSRF policy for one address.
func (f *cimdFetcher) addrAllowed(host string, a netip.Addr) bool {
	if f.opts.AllowPrivateAddresses || slices.Contains(f.opts.AllowedHosts, strings.ToLower(host)) {
		return true
	}
	return publicAddr(a)
}

// specialPurpose are ranges (RFC 6890 registries) that netip's predicates
// do not cover but that never hold a public client's metadata: "this
// network", shared address space (CGNAT), IETF protocol assignments,
// benchmarking, reserved, discard-only; and the IPv6 prefixes that embed an
// IPv4 address a gateway would translate (NAT64, 6to4, Teredo), through
// which 64:ff9b::10.0.0.1 would reach 10.0.0.1.
var specialPurpose = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2002::/16"),
}

func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() ||
		a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range specialPurpose {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// dial resolves the host, refuses forbidden addresses, and dials exactly the
// address it checked; the socket's Control hook re-checks the address really
// connected to, so DNS rebinding between check and dial gains nothing.
func (f *cimdFetcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("oauth: split %q: %w", addr, err)
	}
	var candidates []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		candidates = []netip.Addr{ip}
	} else {
		candidates, err = f.opts.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("oauth: resolve %q: %w", host, err)
		}
	}
	var allowed []netip.Addr
	for _, a := range candidates {
		if f.addrAllowed(host, a) {
			allowed = append(allowed, a.Unmap())
		}
	}
	if len(allowed) == 0 {
		return nil, fmt.Errorf("%w: %s", errForbiddenAddress, host)
	}
	d := net.Dialer{
		Timeout: f.opts.Timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !f.addrAllowed(host, ap.Addr()) {
				return fmt.Errorf("%w: %s", errForbiddenAddress, address)
			}
			return nil
		},
	}
	var lastErr error
	for _, a := range allowed {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("oauth: dial %s: %w", host, lastErr)
}

// maxClientIDLen bounds a metadata document URL (it is stored as the
// client_id of every request and grant).
const maxClientIDLen = 512

// validateCIMDURL applies the draft's rules to a client_id URL.
func validateCIMDURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: client_id is not a URL", errCIMD)
	}
	switch {
	case u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("%w: client_id must be an https URL", errCIMD)
	case u.User != nil:
		return nil, fmt.Errorf("%w: client_id must not contain credentials", errCIMD)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, fmt.Errorf("%w: client_id must not contain a fragment", errCIMD)
	case len(raw) > maxClientIDLen:
		return nil, fmt.Errorf("%w: client_id may be at most %d characters", errCIMD, maxClientIDLen)
	case u.Path == "" || u.Path == "/":
		return nil, fmt.Errorf("%w: client_id must contain a path", errCIMD)
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("%w: client_id must not contain dot segments", errCIMD)
		}
	}
	return u, nil
}

// cimdDocument is a client ID metadata document: RFC 7591 client metadata,
// as a registration request carries it, plus the client's own ID (and a
// secret, which such a document must not have).
type cimdDocument struct {
	registrationRequest
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// client returns the client described by the document at id, from the
// shared cache or by fetching it.
func (f *cimdFetcher) client(ctx context.Context, id string, mayFetch func() error) (*Client, error) {
	if _, err := validateCIMDURL(id); err != nil {
		return nil, err
	}
	key := keyCIMD + hashOf(id)
	if b, err := f.store.Get(ctx, key); err == nil {
		var c Client
		if json.Unmarshal(b, &c) == nil && c.ID == id {
			return &c, nil
		}
	} else if !errors.Is(err, session.ErrNotFound) {
		return nil, fmt.Errorf("oauth: read metadata document cache: %w", err)
	}
	if mayFetch != nil {
		if err := mayFetch(); err != nil {
			return nil, err
		}
	}
	c, err := f.fetch(ctx, id)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("oauth: encode client: %w", err)
	}
	if err := f.store.Put(ctx, key, b, f.opts.CacheTTL); err != nil {
		return nil, fmt.Errorf("oauth: cache metadata document: %w", err)
	}
	return c, nil
}

func (f *cimdFetcher) fetch(ctx context.Context, id string) (*Client, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCIMD, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch: %w", errCIMD, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: fetch answered %d (redirects are not followed)", errCIMD, resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("%w: content type %q is not application/json", errCIMD, mt)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read: %w", errCIMD, err)
	}
	if int64(len(body)) > f.opts.MaxBytes {
		return nil, fmt.Errorf("%w: document larger than %d bytes", errCIMD, f.opts.MaxBytes)
	}
	var doc cimdDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %w", errCIMD, err)
	}
	if doc.ClientID != id {
		return nil, fmt.Errorf("%w: document client_id does not equal its URL", errCIMD)
	}
	if doc.ClientSecret != "" {
		return nil, fmt.Errorf("%w: documents must not carry a client_secret", errCIMD)
	}
	if doc.TokenEndpointAuthMethod != "" && doc.TokenEndpointAuthMethod != authNone {
		return nil, fmt.Errorf("%w: token_endpoint_auth_method %q is not supported (only none)", errCIMD, doc.TokenEndpointAuthMethod)
	}
	if err := validateRedirectURIs(doc.RedirectURIs); err != nil {
		return nil, fmt.Errorf("%w: %w", errCIMD, err)
	}
	if err := validateMetadataSizes(doc.registrationRequest); err != nil {
		return nil, fmt.Errorf("%w: %w", errCIMD, err)
	}
	grants := []string{grantAuthCode}
	if len(doc.GrantTypes) == 0 || slices.Contains(doc.GrantTypes, grantRefresh) {
		grants = append(grants, grantRefresh)
	}
	return &Client{
		ID:           id,
		AuthMethod:   authNone,
		RedirectURIs: doc.RedirectURIs,
		GrantTypes:   grants,
		Name:         doc.ClientName,
		URI:          doc.ClientURI,
		Scope:        doc.Scope,
		FromDocument: true,
	}, nil
}
