package oauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/ratelimit"
)

// fixedResolver answers every name with one address, to model a public
// looking name that points at a private address (DNS rebinding).
type fixedResolver struct{ addr netip.Addr }

func (f fixedResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{f.addr}, nil
}

func TestClientIDMetadataDocuments(t *testing.T) {
	var fetches atomic.Int32
	var docs *httptest.Server
	doc := func(id string) map[string]any {
		return map[string]any{"client_id": id, "client_name": "Doc Client", "redirect_uris": []string{loopCB}, "token_endpoint_auth_method": "none"}
	}
	mux := http.NewServeMux()
	serve := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Accept") != "application/json" {
				http.Error(w, "want Accept: application/json", 406)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	mux.HandleFunc("/good.json", func(w http.ResponseWriter, r *http.Request) { serve(doc(docs.URL+"/good.json"))(w, r) })
	mux.HandleFunc("/mismatch.json", func(w http.ResponseWriter, r *http.Request) { serve(doc(docs.URL+"/good.json"))(w, r) })
	mux.HandleFunc("/big.json", func(w http.ResponseWriter, r *http.Request) {
		// Valid JSON followed by padding, so only the size limit refuses it.
		b, _ := json.Marshal(doc(docs.URL + "/big.json"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(b, strings.Repeat(" ", 6<<10)...))
	})
	mux.HandleFunc("/redirect.json", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/redirect-target.json", http.StatusFound)
	})
	// The redirect target is a valid document for /redirect.json, so only
	// the no-redirect rule refuses it.
	mux.HandleFunc("/redirect-target.json", func(w http.ResponseWriter, r *http.Request) { serve(doc(docs.URL+"/redirect.json"))(w, r) })
	mux.HandleFunc("/gone.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(doc(docs.URL + "/gone.json"))
	})
	mux.HandleFunc("/secret.json", func(w http.ResponseWriter, r *http.Request) {
		d := doc(docs.URL + "/secret.json")
		d["client_secret"] = "s"
		serve(d)(w, r)
	})
	// Each of these is a valid document except for the one rule it breaks,
	// so only that rule refuses it.
	mux.HandleFunc("/text.json", func(w http.ResponseWriter, r *http.Request) {
		b, _ := json.Marshal(doc(docs.URL + "/text.json"))
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/auth-method.json", func(w http.ResponseWriter, r *http.Request) {
		d := doc(docs.URL + "/auth-method.json")
		d["token_endpoint_auth_method"] = "client_secret_basic"
		serve(d)(w, r)
	})
	mux.HandleFunc("/bad-redirect.json", func(w http.ResponseWriter, r *http.Request) {
		d := doc(docs.URL + "/bad-redirect.json")
		d["redirect_uris"] = []string{loopCB, "http://evil.example/cb"}
		serve(d)(w, r)
	})
	mux.HandleFunc("/no-redirect.json", func(w http.ResponseWriter, r *http.Request) {
		d := doc(docs.URL + "/no-redirect.json")
		d["redirect_uris"] = []string{}
		serve(d)(w, r)
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) { serve(doc(docs.URL+"/"))(w, r) })
	mux.HandleFunc("/userinfo.json", func(w http.ResponseWriter, r *http.Request) {
		serve(doc(strings.Replace(docs.URL, "https://", "https://u@", 1)+"/userinfo.json"))(w, r)
	})
	docs = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if strings.Contains(r.URL.Path, "/../") { // ServeMux would redirect to the cleaned path
			serve(doc(docs.URL+r.URL.Path))(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(docs.Close)
	roots := x509.NewCertPool()
	roots.AddCert(docs.Certificate())
	tlsCfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	allow := func(o *oauth.Options) { o.CIMD = oauth.CIMDOptions{AllowPrivateAddresses: true, TLSConfig: tlsCfg} }
	strict := func(o *oauth.Options) { o.CIMD = oauth.CIMDOptions{TLSConfig: tlsCfg} }
	rebind := func(o *oauth.Options) {
		o.CIMD = oauth.CIMDOptions{TLSConfig: tlsCfg, Resolver: fixedResolver{netip.MustParseAddr("10.1.2.3")}}
	}
	tests := []struct {
		name string
		opt  envOpt
		path string
		ok   bool
	}{
		{"control: allowed loopback document", allow, "/good.json", true},
		{"loopback refused by default", strict, "/good.json", false},
		{"private address after DNS refused", rebind, "/good.json", false},
		{"redirect refused", allow, "/redirect.json", false},
		{"oversized refused", allow, "/big.json", false},
		{"client_id mismatch refused", allow, "/mismatch.json", false},
		{"client_secret in document refused", allow, "/secret.json", false},
		{"missing document refused", allow, "/missing.json", false},
		{"non-200 document refused", allow, "/gone.json", false},
		{"non-JSON content type refused", allow, "/text.json", false},
		{"client authentication method other than none refused", allow, "/auth-method.json", false},
		{"http non-loopback redirect URI refused", allow, "/bad-redirect.json", false},
		{"no redirect URIs refused", allow, "/no-redirect.json", false},
		{"client_id without a path refused", allow, "/", false},
		{"client_id with dot segments refused", allow, "/x/../good.json", false},
		{"client_id with user info refused", allow, "/userinfo.json", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newMemEnv(t, tc.opt)
			clientID := docs.URL + tc.path
			switch tc.name {
			case "private address after DNS refused":
				clientID = strings.Replace(clientID, "127.0.0.1", "docs.example.com", 1)
			case "client_id with user info refused":
				clientID = strings.Replace(clientID, "https://", "https://u@", 1)
			}
			resp, body := e.authorize(authParams(clientID, oauth2.GenerateVerifier()))
			loc := resp.Header.Get("Location")
			if tc.ok != strings.HasPrefix(loc, issuer+oauth.PathConsent) {
				t.Fatalf("ok=%v but got %d Location=%q %s", tc.ok, resp.StatusCode, loc, body)
			}
			if !tc.ok && (resp.StatusCode != 400 || loc != "") {
				t.Fatalf("refusal must be an error page, got %d Location=%q", resp.StatusCode, loc)
			}
		})
	}

	// Fetching a document stores it (the cache), so a client_id URL the
	// proxy has not seen is unauthenticated state creation: at the token and
	// revocation endpoints too it takes from the client address's budget,
	// while a cached document costs nothing.
	t.Run("uncached documents at the token endpoint are rate limited", func(t *testing.T) {
		limiter, err := ratelimit.New(ratelimit.Rate{PerMinute: 1, Burst: 2}, ratelimit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		e := newMemEnv(t, allow, func(o *oauth.Options) { o.RequestLimiter = limiter })
		good := docs.URL + "/good.json"
		v := oauth2.GenerateVerifier()
		code, _ := e.codeWith(authParams(good, v), "alice") // fetches and caches good.json (1 of 2)
		before := fetches.Load()
		statuses := []int{}
		for i := range 4 {
			resp, m := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"},
				"client_id": {fmt.Sprintf("%s/made-up-%d.json", docs.URL, i)}})
			statuses = append(statuses, resp.StatusCode)
			if resp.StatusCode == http.StatusTooManyRequests && (m["error"] != "slow_down" || resp.Header.Get("Retry-After") == "") {
				t.Fatalf("limited token request: %v, Retry-After %q; want slow_down with Retry-After", m, resp.Header.Get("Retry-After"))
			}
		}
		if want := []int{401, 429, 429, 429}; !slices.Equal(statuses, want) {
			t.Fatalf("token requests with made-up client_id URLs: %v, want %v", statuses, want)
		}
		if n := fetches.Load() - before; n != 1 {
			t.Fatalf("%d documents fetched for made-up client IDs, want 1 (then limited)", n)
		}
		resp, m := e.token(codeForm(good, code, v))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("cached client with an exhausted budget: %d %v; want 200", resp.StatusCode, m)
		}
	})

	t.Run("full flow and cache", func(t *testing.T) {
		e := newMemEnv(t, allow)
		id := docs.URL + "/good.json"
		before := fetches.Load()
		v := oauth2.GenerateVerifier()
		code, _ := e.codeWith(authParams(id, v), "alice")
		resp, m := e.token(codeForm(id, code, v))
		if resp.StatusCode != 200 {
			t.Fatalf("token: %d %v", resp.StatusCode, m)
		}
		if c := verifyAccess(t, e.srvs[0], m["access_token"].(string)); c.ClientID != id {
			t.Fatalf("client_id claim %q", c.ClientID)
		}
		if n := fetches.Load() - before; n != 1 {
			t.Fatalf("document fetched %d times, want 1 (cached)", n)
		}
	})
}
