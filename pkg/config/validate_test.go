package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// validOIDC is the smallest valid OIDC configuration. The discovery host
// cannot resolve: Validate must not touch the network.
func validOIDC() Config {
	c := Defaults()
	c.OIDC.DiscoveryURL = "https://idp.invalid"
	c.OIDC.ClientID = "mcp"
	return c
}

const cookieSecret32 = "0123456789abcdef0123456789abcdef"

func validRedis() Config {
	c := validOIDC()
	c.Session.Store = "redis"
	c.Redis.URL = "redis://:pw@redis.invalid:6379/0"
	c.Session.CookieSecret = cookieSecret32
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		base   func() Config
		mutate func(*Config)
		want   []string // sorted, unique field paths; nil means valid
		// contains maps a path to a text its message must contain.
		contains map[string]string
	}{
		{name: "minimal oidc", base: validOIDC},
		{name: "redis url", base: validRedis},
		{name: "redis addrs", base: validRedis, mutate: func(c *Config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.MasterName = "", []string{"s1:26379", "s2:26379"}, "mymaster"
		}},
		{name: "rediss url", base: validRedis, mutate: func(c *Config) { c.Redis.URL = "rediss://redis.invalid:6380" }},
		{name: "bypass acknowledged", base: Defaults, mutate: func(c *Config) { c.AuthMode, c.AllowInsecureBypass = "bypass", true }},
		{name: "insecure cookies with plain name", base: validOIDC, mutate: func(c *Config) {
			c.Session.InsecureCookies, c.Session.CookieName = true, "mcp-session"
		}},
		{name: "__Host- cookie with secure cookies", base: validOIDC, mutate: func(c *Config) { c.Session.CookieName = "__Host-x" }},
		{name: "good public paths", base: validOIDC, mutate: func(c *Config) { c.PublicPaths = []string{"/healthz", "/static/*", "/oauth2"} }},
		{name: "full tls and urls", base: validOIDC, mutate: func(c *Config) {
			c.TLS.CertFile, c.TLS.KeyFile = "/tls/crt", "/tls/key"
			c.ExternalURL, c.OIDC.RedirectURL = "https://mcp.example.com", "https://mcp.example.com/oauth2/callback"
			c.Tracing.Endpoint = "http://otel:4318"
		}},

		{name: "mcp auth settings", base: validOIDC, mutate: func(c *Config) {
			c.MCPPath, c.TrustedProxies, c.AllowedOrigins = "/v1/mcp", []string{"10.0.0.0/8", "192.0.2.7"}, []string{"https://app.example.com"}
			c.OAuth.Mode, c.Authz.RequiredClaims = "external", []string{"tenant=acme", "roles=mcp"}
		}},
		{name: "external url with query", base: validOIDC, mutate: func(c *Config) { c.ExternalURL = "https://mcp.example.com/?x=1" },
			want: []string{"external_url"}},
		{name: "external url with user info", base: validOIDC, mutate: func(c *Config) { c.ExternalURL = "https://u:pw@mcp.example.com" },
			want: []string{"external_url"}},
		{name: "external url with a path", base: validOIDC, mutate: func(c *Config) { c.ExternalURL = "https://example.com/mcp-proxy/" }},
		{name: "signing keys not PEM", base: validOIDC, mutate: func(c *Config) { c.OAuth.SigningKeys = "not-a-key-hunter2" },
			want: []string{"oauth.signing_keys"}},
		{name: "bad mcp path", base: validOIDC, mutate: func(c *Config) { c.MCPPath = "/oauth2/mcp" },
			want: []string{"mcp_path"}},
		{name: "bad trusted proxy", base: validOIDC, mutate: func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33"} },
			want: []string{"trusted_proxies"}},
		{name: "origin with a path", base: validOIDC, mutate: func(c *Config) { c.AllowedOrigins = []string{"https://app.example.com/x"} },
			want: []string{"allowed_origins"}},
		{name: "no request body timeout", base: validOIDC, mutate: func(c *Config) { c.RequestBodyTimeout = 0 },
			want: []string{"request_body_timeout"}},
		{name: "memory limit in bytes", base: validOIDC, mutate: func(c *Config) { c.MemoryLimit = "536870912" }},
		{name: "memory limit with a suffix", base: validOIDC, mutate: func(c *Config) { c.MemoryLimit = "512Mi" }},
		{name: "memory limit not a size", base: validOIDC, mutate: func(c *Config) { c.MemoryLimit = "lots" },
			want: []string{"memory_limit"}},
		{name: "allowed hosts", base: validOIDC, mutate: func(c *Config) {
			c.AllowedHosts = []string{"mcp.example.com", "*.team.svc", "*.team.svc.cluster.local:8080", "10.1.2.3", "fd00::1", "[fd00::1]:8080"}
		}},
		{name: "allowed host with a scheme", base: validOIDC, mutate: func(c *Config) { c.AllowedHosts = []string{"https://mcp.example.com"} },
			want: []string{"allowed_hosts"}},
		{name: "allowed host with a bad port", base: validOIDC, mutate: func(c *Config) { c.AllowedHosts = []string{"mcp.example.com:http"} },
			want: []string{"allowed_hosts"}},
		{name: "allowed host with an inner wildcard", base: validOIDC, mutate: func(c *Config) { c.AllowedHosts = []string{"a.*.example.com"} },
			want: []string{"allowed_hosts"}},
		{name: "unknown oauth mode", base: validOIDC, mutate: func(c *Config) { c.OAuth.Mode = "proxy" },
			want: []string{"oauth.mode"}},
		{name: "long-lived access tokens", base: validOIDC, mutate: func(c *Config) { c.OAuth.AccessTokenTTL = 48 * time.Hour },
			want: []string{"oauth.access_token_ttl"}},
		{name: "refresh family without an end", base: validOIDC, mutate: func(c *Config) { c.OAuth.RefreshTokenMaxLifetime = 0 },
			want: []string{"oauth.refresh_token_max_lifetime"}},
		{name: "upstream recheck on every refresh", base: validOIDC, mutate: func(c *Config) { c.OAuth.UpstreamRecheckInterval = time.Second },
			want: []string{"oauth.upstream_recheck_interval"}},
		{name: "required claim without value", base: validOIDC, mutate: func(c *Config) { c.Authz.RequiredClaims = []string{"tenant"} },
			want: []string{"authz.required_claims"}},

		{name: "missing client id", base: validOIDC, mutate: func(c *Config) { c.OIDC.ClientID = "" },
			want:     []string{"oidc.client_id"},
			contains: map[string]string{"oidc.client_id": "oidc.client_id: required when auth mode is oidc; set --oidc-client-id, OIDC_CLIENT_ID"}},
		{name: "missing discovery", base: validOIDC, mutate: func(c *Config) { c.OIDC.DiscoveryURL = "" },
			want: []string{"oidc.discovery_url"}, contains: map[string]string{"oidc.discovery_url": "required"}},
		{name: "defaults need oidc settings", base: Defaults,
			want: []string{"oidc.client_id", "oidc.discovery_url"}},
		{name: "discovery not a URL", base: validOIDC, mutate: func(c *Config) { c.OIDC.DiscoveryURL = "idp.example.com" },
			want: []string{"oidc.discovery_url"}},
		{name: "bypass without acknowledgement", base: Defaults, mutate: func(c *Config) { c.AuthMode = "bypass" },
			want: []string{"auth_mode"}, contains: map[string]string{"auth_mode": "allow_insecure_bypass"}},
		{name: "unknown auth mode", base: validOIDC, mutate: func(c *Config) { c.AuthMode = "basic" },
			want: []string{"auth_mode"}},
		{name: "redis without url", base: validRedis, mutate: func(c *Config) { c.Redis.URL = "" },
			want: []string{"redis.url"}, contains: map[string]string{"redis.url": "required when session.store is redis"}},
		{name: "redis url and addrs", base: validRedis, mutate: func(c *Config) { c.Redis.Addrs = []string{"a:1"} },
			want: []string{"redis.addrs"}},
		{name: "redis url wrong scheme", base: validRedis, mutate: func(c *Config) { c.Redis.URL = "http://redis.invalid" },
			want: []string{"redis.url"}},
		{name: "redis without cookie secret", base: validRedis, mutate: func(c *Config) { c.Session.CookieSecret = "" },
			want: []string{"session.cookie_secret"}, contains: map[string]string{"session.cookie_secret": "redis"}},
		{name: "short cookie secret", base: validOIDC, mutate: func(c *Config) { c.Session.CookieSecret = cookieSecret32[:31] },
			want: []string{"session.cookie_secret"}, contains: map[string]string{"session.cookie_secret": "at least 32 bytes"}},
		{name: "sentinel and cluster", base: validRedis, mutate: func(c *Config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.MasterName, c.Redis.Cluster = "", []string{"a:1"}, "m", true
		}, want: []string{"redis.cluster"}},
		{name: "cluster db", base: validRedis, mutate: func(c *Config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.Cluster, c.Redis.DB = "", []string{"a:1"}, true, 2
		}, want: []string{"redis.db"}},
		{name: "empty key prefix", base: validRedis, mutate: func(c *Config) { c.Redis.KeyPrefix = "" },
			want: []string{"redis.key_prefix"}},
		{name: "unknown store", base: validOIDC, mutate: func(c *Config) { c.Session.Store = "etcd" },
			want: []string{"session.store"}},
		{name: "__Host- cookie with insecure cookies", base: validOIDC, mutate: func(c *Config) {
			c.Session.InsecureCookies, c.Session.CookieName = true, "__Host-mcp"
		}, want: []string{"session.cookie_name"}},
		{name: "__Secure- cookie with insecure cookies", base: validOIDC, mutate: func(c *Config) {
			c.Session.InsecureCookies, c.Session.CookieName = true, "__Secure-mcp"
		}, want: []string{"session.cookie_name"}},
		{name: "cookie name with a separator", base: validOIDC, mutate: func(c *Config) { c.Session.CookieName = "mcp;session" },
			want: []string{"session.cookie_name"}},
		{name: "public path without slash", base: validOIDC, mutate: func(c *Config) { c.PublicPaths = []string{"healthz"} },
			want: []string{"public_paths"}},
		{name: "public path inner wildcard", base: validOIDC, mutate: func(c *Config) { c.PublicPaths = []string{"/a*/b"} },
			want: []string{"public_paths"}},
		{name: "public path oauth2", base: validOIDC, mutate: func(c *Config) { c.PublicPaths = []string{"/oauth2/*"} },
			want: []string{"public_paths"}},
		{name: "listen equals admin_listen", base: validOIDC, mutate: func(c *Config) { c.AdminListen = c.Listen },
			want: []string{"admin_listen"}},
		{name: "admin_listen on the wildcard of listen's port", base: validOIDC, mutate: func(c *Config) {
			c.Listen, c.AdminListen = ":15080", "0.0.0.0:15080"
		}, want: []string{"admin_listen"}},
		{name: "same port different hosts", base: validOIDC, mutate: func(c *Config) {
			c.Listen, c.AdminListen = "10.0.0.1:15080", "127.0.0.1:15080"
		}},
		{name: "listen not host:port", base: validOIDC, mutate: func(c *Config) { c.Listen = "15080" },
			want: []string{"listen"}},
		{name: "upstream missing", base: validOIDC, mutate: func(c *Config) { c.Upstream = "" },
			want: []string{"upstream"}},
		{name: "bad log level", base: validOIDC, mutate: func(c *Config) { c.LogLevel = "loud" },
			want: []string{"log_level"}},
		{name: "half tls", base: validOIDC, mutate: func(c *Config) { c.TLS.CertFile = "/tls/crt" },
			want: []string{"tls"}},
		{name: "bad header name", base: validOIDC, mutate: func(c *Config) { c.Headers.User = "X User" },
			want: []string{"headers.user"}},
		{name: "bad preset", base: validOIDC, mutate: func(c *Config) { c.Headers.Preset = "custom" },
			want: []string{"headers.preset"}},
		{name: "sample ratio", base: validOIDC, mutate: func(c *Config) { c.Tracing.SampleRatio = 1.5 },
			want: []string{"tracing.sample_ratio"}},
		{name: "rate limits", base: validOIDC, mutate: func(c *Config) {
			c.RateLimit = RateLimitConfig{LoginsPerMinute: 0, LoginBurst: -1, MaxAddresses: 10}
		}, want: []string{"rate_limit.login_burst", "rate_limit.logins_per_minute", "rate_limit.max_addresses"}},
		{name: "many at once", base: validOIDC, mutate: func(c *Config) {
			c.OIDC.ClientID, c.LogLevel, c.Session.TTL, c.UpstreamPolicy.RetryAttempts = "", "loud", 0, 0
			c.Session.LimitPolicy, c.Session.MaxPerUser = "drop", -1
		}, want: []string{"log_level", "oidc.client_id", "session.limit_policy", "session.max_per_user", "session.ttl", "upstream_policy.retry_attempts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.base()
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			err := c.Validate()
			if got := errorPaths(t, err); !slices.Equal(got, tt.want) {
				t.Fatalf("error paths %v, want %v (err: %v)", got, tt.want, err)
			}
			for path, text := range tt.contains {
				if fe := mustFieldError(t, err, path); !strings.Contains(fe.Error(), text) {
					t.Errorf("%q does not contain %q", fe, text)
				}
			}
		})
	}
}

func TestValidateNeverEchoesRedisPassword(t *testing.T) {
	const pw = "hunter2-Sup3rSecret"
	for _, raw := range []string{
		"http://user:" + pw + "@redis.invalid:6379",
		"redis://user:" + pw + "@[::1:6379",         // does not parse
		"redis://user:" + pw + "@redis.invalid:%zz", // does not parse
		"user:" + pw + "@redis.invalid:6379",        // no scheme
	} {
		c := validRedis()
		c.Redis.URL = raw
		err := c.Validate()
		mustFieldError(t, err, "redis.url")
		if strings.Contains(err.Error(), pw) {
			t.Errorf("validation error leaks the Redis password: %v", err)
		}
	}

	// The same through Load, from the original environment name.
	l := mustLoad(t, Source{Env: []string{
		"OIDC_DISCOVERY_URL=https://idp.invalid", "OIDC_CLIENT_ID=mcp", "COOKIE_SECRET=" + cookieSecret32,
		"SESSION_STORE=redis", "REDIS_URL=tcp://:" + pw + "@redis.invalid",
	}})
	err := l.Config.Validate()
	mustFieldError(t, err, "redis.url")
	if strings.Contains(err.Error(), pw) {
		t.Errorf("validation error leaks the Redis password: %v", err)
	}
}

func TestRestartRequired(t *testing.T) {
	a := validOIDC()
	b := a
	b.LogLevel, b.Authz.AllowedEmails, b.Headers.Preset = "debug", []string{"a@x.test"}, "original"
	if got := a.RestartRequired(&b); len(got) != 0 {
		t.Errorf("reloadable changes reported as needing a restart: %v", got)
	}
	b.Upstream, b.Session.TTL, b.OIDC.Scopes = "http://other:1", a.Session.TTL+1, []string{"openid"}
	if got, want := a.RestartRequired(&b), []string{"upstream", "oidc.scopes", "session.ttl"}; !slices.Equal(got, want) {
		t.Errorf("RestartRequired = %v, want %v", got, want)
	}
}

func TestValidateNeverEchoesSigningKeysOrURLPasswords(t *testing.T) {
	const secret = "hunter2-Sup3rSecret"
	c := validOIDC()
	c.OAuth.SigningKeys = "garbage " + secret
	c.ExternalURL = "https://admin:" + secret + "@mcp.example.com"
	err := c.Validate()
	mustFieldError(t, err, "oauth.signing_keys")
	mustFieldError(t, err, "external_url")
	if strings.Contains(err.Error(), secret) {
		t.Errorf("validation error leaks a secret: %v", err)
	}
}

func TestFieldPath(t *testing.T) {
	tests := []struct {
		got  fieldPath
		want string
	}{
		{root, ""},
		{root.Child("listen"), "listen"},
		{root.Child("session").Child("cookie_name"), "session.cookie_name"},
		{root.Child("oauth").Child("signing_keys"), "oauth.signing_keys"},
	}
	for _, tt := range tests {
		if tt.got.String() != tt.want {
			t.Errorf("path %q, want %q", tt.got, tt.want)
		}
	}
}

// Every path a section validator reports names a real setting (or, for a
// rule about several, their section), so the flags table, the injector's
// secret lookup and the operator can all find it.
func TestValidatePathsNameSettings(t *testing.T) {
	known := map[string]bool{}
	for _, f := range Fields() {
		known[f.Path] = true
		for p := f.Path; strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			known[p] = true
		}
	}
	bad := func(c *Config) {
		c.Listen, c.AdminListen, c.Upstream, c.ExternalURL, c.LogLevel = "x", "x", "x", "x?q", "x"
		c.PublicPaths, c.ShutdownGrace, c.RequestBodyTimeout, c.TLS.CertFile = []string{"x*"}, -1, 0, "x"
		c.OIDC = OIDCConfig{RedirectURL: "x", PostLogoutURL: "x"}
		c.Session = SessionConfig{Store: "redis", CookieSecret: "short", CookieName: "a b", IdleTimeout: -1, MaxPerUser: -1, RefreshBefore: -1}
		c.Redis = RedisConfig{URL: "x", Addrs: []string{"a"}, MasterName: "m", Cluster: true, DB: 1}
		c.Headers = HeadersConfig{Preset: "x", User: "a b", Email: "a b", Groups: "a b", Name: "a b", Username: "a b"}
		c.Authz.RequiredClaims = []string{"x"}
		c.UpstreamPolicy, c.Tracing, c.RateLimit = UpstreamConfig{}, TracingConfig{SampleRatio: 2, Endpoint: "x"}, RateLimitConfig{}
		c.MCPPath, c.TrustedProxies, c.AllowedOrigins, c.AllowedHosts = "x", []string{"x"}, []string{"x"}, []string{"a/b"}
		c.OAuth = OAuthConfig{Mode: "x", SigningKeys: "x", ExternalIssuer: "x", ExternalJWKSURL: "x", IntrospectionURL: "x"}
	}
	for _, mode := range []string{"oidc", "bypass", "other"} {
		c := validOIDC()
		bad(&c)
		c.AuthMode = mode
		paths := errorPaths(t, c.Validate())
		if len(paths) < 30 {
			t.Errorf("auth_mode %s: only %d paths reported for a config wrong everywhere: %v", mode, len(paths), paths)
		}
		for _, p := range paths {
			if !known[p] {
				t.Errorf("auth_mode %s: error path %q names no setting", mode, p)
			}
		}
	}
}
