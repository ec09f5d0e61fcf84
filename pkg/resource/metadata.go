// Package resource makes the MCP endpoint an OAuth protected resource that
// real MCP clients can use: it publishes RFC 9728 metadata, answers CORS
// for browser-based clients, refuses foreign Origins (DNS rebinding), binds
// MCP sessions to the user who created them and can vouch for the caller
// to the MCP server with a signed identity assertion.
package resource

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// WellKnownPath is the RFC 9728 metadata path; the path-inserted form for
// an MCP endpoint at /mcp is WellKnownPath + "/mcp".
const WellKnownPath = "/.well-known/oauth-protected-resource"

// MetadataOptions describe the protected resource.
type MetadataOptions struct {
	// BaseURL returns the external base URL for a request (see
	// forwarded.Resolver.BaseURL). Required.
	BaseURL func(r *http.Request) string
	// MCPPath is the MCP endpoint's path, such as "/mcp". Required.
	MCPPath string
	// AuthorizationServers are issuer URLs of authorization servers that
	// issue tokens for this resource.
	AuthorizationServers []string
	// SelfAuthorizationServer adds the proxy's own base URL as an
	// authorization server (the façade).
	SelfAuthorizationServer bool
	// ScopesSupported are advertised as scopes_supported.
	ScopesSupported []string
	// ResourceName is a human-readable name shown by some clients.
	ResourceName string
}

// Metadata serves the protected resource metadata document.
type Metadata struct {
	opts MetadataOptions
}

// Document is the RFC 9728 metadata this package publishes.
type Document struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// NewMetadata checks opts.
func NewMetadata(opts MetadataOptions) (*Metadata, error) {
	var errs []error
	if opts.BaseURL == nil {
		errs = append(errs, errors.New("resource: BaseURL is required"))
	}
	if !strings.HasPrefix(opts.MCPPath, "/") {
		errs = append(errs, fmt.Errorf("resource: MCP path %q must start with /", opts.MCPPath))
	}
	if len(opts.AuthorizationServers) == 0 && !opts.SelfAuthorizationServer {
		errs = append(errs, errors.New("resource: at least one authorization server is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	opts.AuthorizationServers = slices.Clone(opts.AuthorizationServers)
	opts.ScopesSupported = slices.Clone(opts.ScopesSupported)
	return &Metadata{opts: opts}, nil
}

// Paths are the two paths the document is served at: the root form and the
// path-inserted form (RFC 9728 3.1), because clients in the wild use either.
func (m *Metadata) Paths() []string {
	if m.opts.MCPPath == "/" {
		return []string{WellKnownPath}
	}
	return []string{WellKnownPath, WellKnownPath + strings.TrimSuffix(m.opts.MCPPath, "/")}
}

// Resource is the resource identifier for r: the MCP endpoint's absolute
// URL, which is what clients put in the RFC 8707 resource parameter and
// what tokens' aud must contain.
func (m *Metadata) Resource(r *http.Request) string {
	return m.opts.BaseURL(r) + m.opts.MCPPath
}

// URL is the absolute metadata URL advertised in challenges for r: the
// path-inserted form, which the MCP Go SDK checks against the URL it was
// given for the server.
func (m *Metadata) URL(r *http.Request) string {
	paths := m.Paths()
	return m.opts.BaseURL(r) + paths[len(paths)-1]
}

// Document returns the metadata for r.
func (m *Metadata) Document(r *http.Request) Document {
	servers := slices.Clone(m.opts.AuthorizationServers)
	if m.opts.SelfAuthorizationServer {
		servers = append([]string{m.opts.BaseURL(r)}, servers...)
	}
	return Document{
		Resource:               m.Resource(r),
		AuthorizationServers:   servers,
		ScopesSupported:        m.opts.ScopesSupported,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           m.opts.ResourceName,
	}
}

// ServeHTTP writes the document. It is public, so any origin may read it.
func (m *Metadata) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	// The document depends on the host the client used unless an external
	// URL is configured.
	h.Set("Vary", "Host, X-Forwarded-Host, X-Forwarded-Proto")
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(m.Document(r))
}

// Register serves the document (GET, HEAD) and CORS preflights (OPTIONS)
// at both Paths on mux, unauthenticated.
func (m *Metadata) Register(mux *http.ServeMux) {
	h := PublicCORS(m)
	for _, p := range m.Paths() {
		mux.Handle("GET "+p, h)
		mux.Handle("OPTIONS "+p, h)
	}
}
