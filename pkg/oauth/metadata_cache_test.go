package oauth_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
)

// TestMetadataVariesWithHost: the metadata's URLs come from the request's
// Host and forwarding headers (when no external URL is set), so a shared
// cache may keep it only per value of those headers. Without Vary, one
// host's (or one attacker's) document would be served to everyone.
func TestMetadataVariesWithHost(t *testing.T) {
	e := newMemEnv(t, func(o *oauth.Options) {
		o.BaseURL = func(r *http.Request) string { return "https://" + r.Host }
		o.Resources = func(r *http.Request) []string { return []string{"https://" + r.Host + "/mcp"} }
		o.MetadataPaths = []string{"/mcp"}
	})
	for _, p := range []string{
		"/.well-known/oauth-authorization-server",
		"/.well-known/oauth-authorization-server/mcp",
		"/.well-known/openid-configuration",
		"/mcp/.well-known/openid-configuration",
	} {
		t.Run(p, func(t *testing.T) {
			resp, body := e.do(mustReq(t, http.MethodGet, e.url()+p))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			vary := strings.ToLower(strings.Join(resp.Header.Values("Vary"), ","))
			for _, h := range []string{"host", "x-forwarded-host", "x-forwarded-proto"} {
				if !strings.Contains(vary, h) {
					t.Errorf("Vary %q lacks %s (Cache-Control %q)", vary, h, resp.Header.Get("Cache-Control"))
				}
			}
		})
	}
}
