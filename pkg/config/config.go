// Package config loads, validates and reloads the sidecar's settings.
//
// Every setting has one YAML key, one environment variable and one flag, all
// derived from the struct tags below so they cannot drift apart; the original
// project's environment names are accepted as aliases. Precedence is
// flags > environment > file > defaults.
package config

import (
	"time"
)

// Config is the complete sidecar configuration. Field tags:
//   - yaml: the key in the configuration file (nested by struct);
//   - env: extra environment names accepted besides the derived
//     MCP_OIDC_PROXY_<PATH> (used for the original project's names);
//   - usage: the one-line help shown by --help and in the README;
//   - secret: the value is never logged, and a <key>_file variant reads it
//     from a file (mounted Secrets);
//   - podsecret: for secret settings, the key of the pod's Secret
//     (annotation mcp-oidc-proxy.io/secret) that feeds it in an injected
//     sidecar (see PodSecretKeys);
//   - reload: the setting is applied on SIGHUP / file change without restart.
type Config struct {
	// Listen is the serving address that MCP clients and browsers reach.
	Listen string `yaml:"listen" usage:"address of the protected (serving) listener; the original MCP_HOST/MCP_PORT also set it"`
	// AdminListen serves /healthz, /readyz and /metrics away from the
	// protected port so they are never exposed through the Service.
	AdminListen string `yaml:"admin_listen" usage:"address of the admin listener (/healthz, /readyz, /metrics)"`
	// Pprof serves Go's runtime profiles on the admin listener, for finding
	// where CPU and memory go in production. Off by default: profiles reveal
	// internals, and the admin port is reachable by other pods.
	Pprof bool `yaml:"pprof" usage:"serve Go's CPU, heap, allocation and goroutine profiles at /debug/pprof/ on the admin listener (off: they reveal internals, and the admin port is reachable inside the cluster)"`
	// Upstream is the MCP server, normally on localhost.
	Upstream string `yaml:"upstream" usage:"URL of the MCP server to protect; the original MCP_TARGET_HOST/MCP_TARGET_PORT also set it"`
	// ExternalURL is the public base URL users type; it builds the OIDC
	// redirect URL. Empty means "derive from the request".
	ExternalURL string `yaml:"external_url" usage:"public base URL of this proxy, e.g. https://mcp.example.com (used for the OIDC callback URL)"`
	// AuthMode selects the authentication: "oidc" or "bypass" (development).
	AuthMode string `yaml:"auth_mode" env:"AUTH_MODE" usage:"oidc, or bypass (local development only; needs allow_insecure_bypass)"`
	// AllowInsecureBypass is the second, explicit acknowledgement bypass needs.
	AllowInsecureBypass bool `yaml:"allow_insecure_bypass" usage:"acknowledge that auth_mode=bypass lets anyone in (development only)"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level" env:"LOG_LEVEL" reload:"true" usage:"debug, info, warn or error"`
	// PublicPaths skip authentication. An entry ending in "/*" matches the
	// prefix before it; any other entry matches exactly.
	PublicPaths []string `yaml:"public_paths" reload:"true" usage:"comma-separated paths forwarded without authentication; a trailing /* matches a prefix"`
	// MCPPath is the MCP endpoint's path; with the external URL it forms the
	// protected resource identifier MCP clients bind their tokens to.
	MCPPath string `yaml:"mcp_path" usage:"path of the MCP endpoint; the protected resource is <external_url><mcp_path>"`
	// TrustedProxies may set X-Forwarded-Proto/-Host for the URLs the proxy
	// advertises, and their X-Forwarded-For/-Host/-Proto/-Port/-Prefix and
	// X-Real-IP reach the upstream (the client chain extended by this hop);
	// anyone else's forwarded headers are removed or replaced with what this
	// hop saw. Other forwarding headers never reach the upstream.
	TrustedProxies []string `yaml:"trusted_proxies" usage:"comma-separated CIDRs of reverse proxies whose X-Forwarded-Proto/-Host/-For are trusted (for advertised URLs and, with X-Forwarded-Port/-Prefix and X-Real-IP, passed on to the upstream)"`
	// AllowedOrigins may call the MCP endpoint from a browser.
	AllowedOrigins []string `yaml:"allowed_origins" usage:"comma-separated browser origins allowed to call the MCP endpoint (the proxy's own origin always is)"`
	// AllowedHosts are the host names clients may address besides the
	// external URL's host and the loopback names: every other Host (or
	// trusted X-Forwarded-Host) gets 421, the MCP transport spec's DNS
	// rebinding protection. Without external_url this is what keeps a
	// request from choosing the URLs the proxy advertises and the audience
	// it accepts.
	AllowedHosts []string `yaml:"allowed_hosts" usage:"comma-separated host names clients may use besides external_url's host and localhost/127.0.0.1/[::1]: host (any port), host:port, *.example.com (any subdomain), IPs; any other Host gets 421 (DNS rebinding protection)"`
	// ShutdownGrace bounds how long SIGTERM waits for in-flight requests and
	// open streams.
	ShutdownGrace time.Duration `yaml:"shutdown_grace" usage:"how long SIGTERM waits for in-flight requests and open streams"`
	// RequestBodyTimeout bounds how long the endpoints the proxy parses
	// itself wait for a request body, so a client trickling one byte at a
	// time cannot hold connections open. Proxied requests are not limited:
	// uploads to the MCP server may legitimately be slow.
	RequestBodyTimeout time.Duration `yaml:"request_body_timeout" usage:"how long the proxy's own endpoints (/oauth2/*, /api/v1/session, OAuth metadata) wait for a request body before answering 408; requests forwarded to the upstream are not limited"`
	// MemoryLimit is the container's memory limit. The Go runtime's soft
	// limit is set to 90% of it (pkg/memlimit), so garbage is collected
	// before it counts against the container, instead of only when the heap
	// has doubled. The injector passes limits.memory through the downward
	// API. An explicit GOMEMLIMIT wins.
	MemoryLimit string `yaml:"memory_limit" usage:"the container's memory limit, in bytes or with a suffix (512Mi, 1G); the Go runtime's soft memory limit is set to 90% of it (empty: none; GOMEMLIMIT, if set, wins). Injected sidecars get their limits.memory"`

	TLS            TLSConfig           `yaml:"tls"`
	OIDC           OIDCConfig          `yaml:"oidc"`
	Session        SessionConfig       `yaml:"session"`
	Redis          RedisConfig         `yaml:"redis"`
	Headers        HeadersConfig       `yaml:"headers"`
	Authz          AuthzConfig         `yaml:"authz"`
	UpstreamPolicy UpstreamConfig      `yaml:"upstream_policy"`
	Tracing        TracingConfig       `yaml:"tracing"`
	RateLimit      RateLimitConfig     `yaml:"rate_limit"`
	OAuth          OAuthConfig         `yaml:"oauth"`
	Policy         PolicyConfig        `yaml:"policy"`
	Audit          AuditConfig         `yaml:"audit"`
	TokenExchange  TokenExchangeConfig `yaml:"token_exchange"`
	MCPSession     MCPSessionConfig    `yaml:"mcp_session"`
}

// MCPSessionConfig lets every replica serve every MCP session of the
// protocol versions that keep one (2025-11-25 and earlier, Mcp-Session-Id),
// with no session affinity: the MCP server's session id is sealed into the
// id the client sees, together with the replica that owns it, and a
// replica receiving another's session forwards the request there (one hop).
type MCPSessionConfig struct {
	// AdvertiseAddress is how other replicas reach this one's protected
	// listener. Empty: this replica never forwards and sessions it does not
	// own are unknown (fine for one replica).
	AdvertiseAddress string `yaml:"advertise_address" usage:"host:port where other replicas reach this replica's serving (protected) port, to forward MCP session requests it owns (injected sidecars: the pod IP and the pod's port); empty: no forwarding"`
	// TTL bounds how long a sealed session id is accepted.
	TTL time.Duration `yaml:"ttl" usage:"how long an MCP session id the proxy issued is accepted; then the client gets 404 and starts a new session"`
	// HopTimeout bounds connecting to the owning replica. It does not bound
	// the wait for the answer: an MCP server sends no headers until a tool
	// call has something to say, and a slow tool must not be taken for a
	// dead replica (and, with replay, run twice).
	HopTimeout time.Duration `yaml:"hop_timeout" usage:"how long connecting to the replica owning an MCP session may take before it is taken as gone (404, or replay); the answer itself may take as long as the tool does (a connection that goes silent is noticed by TCP keep-alive after about four times this)"`
	// ReplayInitialize keeps each session's initialize request in the
	// session store, so that when its replica is gone another one starts
	// the session again on its own MCP server and the client never notices.
	ReplayInitialize bool `yaml:"replay_initialize" usage:"keep each MCP session's initialize request in the session store, so a replica can start the session again on its own MCP server when the owning replica is gone (the client does not notice; the MCP server's in-memory session state is not carried over)"`
}

// PolicyConfig is the MCP-aware authorization: which tools, prompts and
// resources a caller may use, decided per JSON-RPC request by CEL rules
// (pkg/mcppolicy). With no rules the proxy never parses a request body.
type PolicyConfig struct {
	// Rules are tried in order; the first whose expression is true decides.
	Rules []PolicyRule `yaml:"rules" reload:"true" usage:"ordered rules, each {name, effect: allow|deny, when: CEL expression}; the first whose expression is true decides a tools/call, prompts/get or resources/read, and lists show only what a caller may use (YAML or JSON list in the environment and flag)"`
	// Default decides governed requests no rule matches.
	Default string `yaml:"default" reload:"true" usage:"allow or deny: the decision for a tools/call, prompts/get or resources/read that no rule matches"`
	// Claims lets rules read claims beyond the standard ones; naming them
	// is what lets a misspelt claim be refused at load instead of silently
	// denying everyone. Cookie sessions and façade tokens keep these claims
	// from the login.
	Claims []string `yaml:"claims" reload:"true" usage:"comma-separated extra claims rules may read as claims.<name> (besides sub, email, email_verified, name, preferred_username, groups); sessions and façade tokens keep them from the login (at most 4 KiB in all; protocol claims such as iss, aud, exp, client_id, scope are never kept), and a newly listed claim reaches a session at its next login or token refresh"`
	// MaxBodyBytes caps the request body read for a decision; a larger one
	// is denied, never waved through unread.
	MaxBodyBytes int `yaml:"max_body_bytes" reload:"true" usage:"largest MCP request body (bytes) the policy reads; a larger one is refused with 413, never forwarded unchecked"`
	// MaxListBytes caps a list response the proxy rewrites.
	MaxListBytes int `yaml:"max_list_bytes" reload:"true" usage:"largest tools/prompts/resources list response (bytes) the policy filters; a larger one is replaced by a JSON-RPC error, never shown unfiltered"`
}

// PolicyRule is one policy rule.
type PolicyRule struct {
	// Name identifies the rule in audit lines and errors.
	Name string `yaml:"name" json:"name"`
	// Effect is allow or deny.
	Effect string `yaml:"effect" json:"effect"`
	// When is a CEL expression over the caller and the MCP request.
	When string `yaml:"when" json:"when"`
}

// AuditConfig turns on the audit trail: one line per JSON-RPC request on
// the "audit" logger.
type AuditConfig struct {
	Enabled       bool     `yaml:"enabled" reload:"true" usage:"write one line per MCP JSON-RPC request (user, client, method, tool, decision, rule, outcome, duration) on the audit logger (with policy rules set, mcp_oidc_proxy_mcp_requests_total counts requests even when this is off)"`
	Arguments     bool     `yaml:"arguments" reload:"true" usage:"include tools/call and prompts/get arguments in audit lines, with values under audit.redact_keys replaced"`
	RedactKeys    []string `yaml:"redact_keys" reload:"true" usage:"comma-separated argument key names (any depth, case-insensitive) whose values audit lines replace with \"[REDACTED]\""`
	ToolNameLabel bool     `yaml:"tool_name_label" usage:"add the tool name as a label of mcp_oidc_proxy_mcp_requests_total (off: tool names are unbounded label values)"`
}

// TokenExchangeConfig makes the proxy obtain, per user, a token for a
// downstream API (RFC 8693) and hand it to the MCP server, so the server
// never needs the client's token.
type TokenExchangeConfig struct {
	Enabled        bool          `yaml:"enabled" usage:"exchange each caller's upstream token at the provider (RFC 8693) for a token for token_exchange.audience and send it to the MCP server"`
	Endpoint       string        `yaml:"endpoint" usage:"token endpoint for the exchange (default: the OIDC provider's, from discovery)"`
	Audience       string        `yaml:"audience" usage:"audience of the exchanged token (the downstream API)"`
	Scopes         []string      `yaml:"scopes" usage:"comma-separated scopes requested for the exchanged token"`
	Header         string        `yaml:"header" usage:"request header carrying the exchanged token to the MCP server (Authorization gets \"Bearer <token>\")"`
	ExpiryMargin   time.Duration `yaml:"expiry_margin" usage:"a cached exchanged token is renewed this long before it expires"`
	FailureBackoff time.Duration `yaml:"failure_backoff" usage:"after a failed exchange, the same user's requests get 502 without asking the provider again for this long (no retry storm)"`
}

// OAuthConfig configures how MCP clients obtain bearer tokens (the MCP
// authorization spec) and how the proxy validates them.
type OAuthConfig struct {
	// Mode "facade": the proxy is the OAuth authorization server MCP clients
	// see (dynamic registration, consent, its own short-lived tokens) and
	// logs users in through the OIDC provider; for providers without
	// dynamic client registration. "external": clients go to the OIDC
	// provider directly and the proxy only validates its JWT access tokens.
	Mode                              string        `yaml:"mode" usage:"facade (the proxy is the authorization server MCP clients see) or external (clients use the OIDC provider; the proxy validates its access tokens)"`
	Scopes                            []string      `yaml:"scopes" usage:"comma-separated scopes advertised to MCP clients"`
	RequiredScopes                    []string      `yaml:"required_scopes" usage:"comma-separated scopes every bearer token must carry (403 insufficient_scope otherwise)"`
	AccessTokenTTL                    time.Duration `yaml:"access_token_ttl" usage:"lifetime of access tokens the façade issues"`
	RefreshTokenTTL                   time.Duration `yaml:"refresh_token_ttl" usage:"lifetime of refresh tokens the façade issues (each use rotates them)"`
	RefreshTokenMaxLifetime           time.Duration `yaml:"refresh_token_max_lifetime" usage:"absolute lifetime of a façade refresh token family, fixed at consent and never extended by refreshing; then the user authorizes again"`
	UpstreamRecheckInterval           time.Duration `yaml:"upstream_recheck_interval" usage:"a façade refresh at least this long after the last check renews the user's login at the OIDC provider and re-reads their claims; refused there ends the family, unreachable answers 503"`
	SigningKeys                       string        `yaml:"signing_keys" secret:"true" podsecret:"signing-keys" usage:"PEM private keys (EC P-256 or RSA) the façade signs tokens with; the first signs, all are published; the same on every replica"`
	SigningKeysFile                   string        `yaml:"signing_keys_file" usage:"file holding the PEM signing keys (a mounted Secret)"`
	RegistrationsPerMinute            int           `yaml:"registrations_per_minute" usage:"dynamic client registrations allowed per client address and minute (the address a trusted proxy reports in X-Forwarded-For, else the peer's)"`
	AllowPrivateClientMetadata        bool          `yaml:"allow_private_client_metadata" usage:"allow client ID metadata documents on private or loopback addresses (testing only)"`
	ExternalIssuer                    string        `yaml:"external_issuer" usage:"issuer of the access tokens in external mode (default: the OIDC provider's issuer)"`
	ExternalJWKSURL                   string        `yaml:"external_jwks_url" usage:"JWKS URL for external mode (default: from the issuer's discovery document)"`
	IntrospectionURL                  string        `yaml:"introspection_url" usage:"RFC 7662 endpoint for opaque access tokens in external mode"`
	IntrospectionClientID             string        `yaml:"introspection_client_id" usage:"client ID for the introspection endpoint (default: oidc.client_id)"`
	IntrospectionSecret               string        `yaml:"introspection_secret" secret:"true" podsecret:"introspection-secret" usage:"client secret for the introspection endpoint (default: oidc.client_secret)"`
	IntrospectionSecretFile           string        `yaml:"introspection_secret_file" usage:"file holding the introspection client secret"`
	IntrospectionAllowMissingAudience bool          `yaml:"introspection_allow_missing_audience" usage:"accept introspected tokens without aud (only for providers that check the audience themselves)"`
	IdentityAssertion                 bool          `yaml:"identity_assertion" usage:"add X-MCP-Identity-Assertion, a short-lived JWT signed by the proxy, verifiable at /oauth2/jwks"`
	IdentityAssertionAudience         string        `yaml:"identity_assertion_audience" usage:"aud of the identity assertion (default: the upstream URL)"`
}

// TLSConfig enables TLS on the serving port.
type TLSConfig struct {
	CertFile string `yaml:"cert_file" usage:"PEM certificate for TLS on the serving port (reloaded when the file changes)"`
	KeyFile  string `yaml:"key_file" usage:"PEM private key for TLS on the serving port"`
}

// OIDCConfig describes the upstream OpenID Connect provider and our client.
type OIDCConfig struct {
	DiscoveryURL     string        `yaml:"discovery_url" env:"OIDC_DISCOVERY_URL" usage:"issuer URL or its /.well-known/openid-configuration URL"`
	ClientID         string        `yaml:"client_id" env:"OIDC_CLIENT_ID" usage:"OAuth client ID registered at the provider"`
	ClientSecret     string        `yaml:"client_secret" env:"OIDC_CLIENT_SECRET" secret:"true" podsecret:"client-secret" usage:"OAuth client secret (empty for a public client)"`
	ClientSecretFile string        `yaml:"client_secret_file" env:"OIDC_CLIENT_SECRET_FILE" usage:"file holding the client secret (a mounted Secret)"`
	RedirectURL      string        `yaml:"redirect_url" usage:"callback URL registered at the provider; default <external_url>/oauth2/callback"`
	Scopes           []string      `yaml:"scopes" usage:"comma-separated scopes to request (openid is always added)"`
	UseUserInfo      bool          `yaml:"use_userinfo" usage:"fetch the userinfo endpoint after login and merge its claims"`
	GroupsClaim      string        `yaml:"groups_claim" usage:"claim that holds the user's groups"`
	SkipIssuerCheck  bool          `yaml:"skip_issuer_check" usage:"accept a discovery document whose issuer differs from the URL (some providers need it; weakens checks)"`
	PostLogoutURL    string        `yaml:"post_logout_redirect_url" usage:"where the provider sends the browser after logout"`
	DiscoveryRetry   time.Duration `yaml:"discovery_retry" usage:"maximum back-off between OIDC discovery attempts at startup"`
}

// SessionConfig governs browser sessions.
type SessionConfig struct {
	Store            string        `yaml:"store" env:"SESSION_STORE" usage:"memory (single instance) or redis (shared by replicas)"`
	CookieName       string        `yaml:"cookie_name" usage:"session cookie name; default __Host-mcp-oidc-session (mcp-oidc-session with insecure cookies)"`
	CookieSecret     string        `yaml:"cookie_secret" env:"COOKIE_SECRET" secret:"true" podsecret:"cookie-secret" usage:"at least 32 bytes used to sign session cookies; must be the same on every replica"`
	CookieSecretFile string        `yaml:"cookie_secret_file" env:"COOKIE_SECRET_FILE" usage:"file holding the cookie secret (a mounted Secret)"`
	InsecureCookies  bool          `yaml:"insecure_cookies" usage:"drop the Secure attribute so cookies work over plain http://localhost (development only)"`
	TTL              time.Duration `yaml:"ttl" usage:"absolute session lifetime"`
	IdleTimeout      time.Duration `yaml:"idle_timeout" usage:"session ends after this long without a request"`
	MaxPerUser       int           `yaml:"max_per_user" usage:"concurrent sessions per user (0 = unlimited)"`
	LimitPolicy      string        `yaml:"limit_policy" usage:"what happens past max_per_user: evict-oldest or refuse"`
	RefreshBefore    time.Duration `yaml:"refresh_before" usage:"refresh the access token when it expires within this margin"`
	LocalCacheTTL    time.Duration `yaml:"local_cache_ttl" usage:"redis store: serve a session verified this recently from memory; a logout or refresh elsewhere is honoured on every replica within it (0 disables)"`
}

// RedisConfig reaches the shared session store.
type RedisConfig struct {
	URL                string   `yaml:"url" env:"REDIS_URL" secret:"true" podsecret:"redis-url" usage:"redis:// or rediss:// URL (may include user, password and db)"`
	URLFile            string   `yaml:"url_file" env:"REDIS_URL_FILE" usage:"file holding the Redis URL (a mounted Secret)"`
	Addrs              []string `yaml:"addrs" usage:"comma-separated host:port list (Sentinel or Cluster nodes) instead of url"`
	MasterName         string   `yaml:"master_name" usage:"Sentinel master name (enables Sentinel)"`
	Cluster            bool     `yaml:"cluster" usage:"treat addrs as a Redis Cluster"`
	Username           string   `yaml:"username" usage:"Redis ACL user name"`
	Password           string   `yaml:"password" env:"REDIS_PASSWORD" secret:"true" podsecret:"redis-password" usage:"Redis password"`
	PasswordFile       string   `yaml:"password_file" env:"REDIS_PASSWORD_FILE" usage:"file holding the Redis password (a mounted Secret)"`
	DB                 int      `yaml:"db" usage:"Redis database number (standalone and Sentinel only)"`
	KeyPrefix          string   `yaml:"key_prefix" usage:"prefix of every key this proxy writes"`
	TLS                bool     `yaml:"tls" usage:"use TLS to Redis (implied by rediss://)"`
	CAFile             string   `yaml:"ca_file" usage:"PEM CA bundle that signs the Redis server certificate"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify" usage:"skip Redis certificate verification (testing only)"`
}

// HeadersConfig names the identity headers sent to the MCP server.
type HeadersConfig struct {
	Preset   string `yaml:"preset" reload:"true" usage:"default (X-Forwarded-User/-Email/-Groups) or original (X-User-ID/-Email/-Name/-Groups)"`
	User     string `yaml:"user" reload:"true" usage:"header carrying the user's subject (overrides the preset)"`
	Email    string `yaml:"email" reload:"true" usage:"header carrying the e-mail address (overrides the preset)"`
	Groups   string `yaml:"groups" reload:"true" usage:"header carrying comma-separated groups (overrides the preset)"`
	Name     string `yaml:"name" reload:"true" usage:"header carrying the display name (overrides the preset)"`
	Username string `yaml:"username" reload:"true" usage:"header carrying preferred_username (overrides the preset)"`
}

// AuthzConfig is the allow-list applied after authentication. Empty lists
// allow every authenticated user.
type AuthzConfig struct {
	AllowUnverifiedEmail bool     `yaml:"allow_unverified_email" reload:"true" usage:"let the e-mail rules accept addresses the provider did not mark verified (for providers that never send email_verified, such as Entra ID)"`
	AllowedEmailDomains  []string `yaml:"allowed_email_domains" reload:"true" usage:"comma-separated e-mail domains allowed in (verified e-mail required)"`
	AllowedEmails        []string `yaml:"allowed_emails" reload:"true" usage:"comma-separated e-mail addresses allowed in (verified e-mail required)"`
	AllowedGroups        []string `yaml:"allowed_groups" reload:"true" usage:"comma-separated groups; membership in one is required"`
	RequiredClaims       []string `yaml:"required_claims" reload:"true" usage:"comma-separated claim=value pairs every caller must carry (for list claims: membership); cookie sessions carry the standard claims and those listed in policy.claims only"`
}

// UpstreamConfig tunes how the proxy treats a restarting MCP server.
type UpstreamConfig struct {
	RetryAttempts   int           `yaml:"retry_attempts" usage:"attempts for idempotent requests when the upstream refuses connections"`
	BreakerFailures int           `yaml:"breaker_failures" usage:"consecutive connection failures that open the circuit breaker"`
	BreakerOpenFor  time.Duration `yaml:"breaker_open_for" usage:"how long the breaker fails fast before trying the upstream again"`
	ResponseTimeout time.Duration `yaml:"response_header_timeout" usage:"maximum wait for the upstream's response headers (0 = none; streams are unaffected once started)"`
}

// RateLimitConfig limits, per client address, the requests with which a
// caller who has not logged in makes the proxy store state: browser login
// starts and OAuth authorization requests share one budget per address.
// The client address is the peer's, or the X-Forwarded-For address a
// trusted proxy (trusted_proxies) reports. Limits are per replica. Dynamic
// client registration has its own limit, oauth.registrations_per_minute,
// on the same client address.
type RateLimitConfig struct {
	LoginsPerMinute int `yaml:"logins_per_minute" usage:"browser logins and OAuth authorization requests a client address may start per minute and replica (each stores state until it completes or expires); raise it for many users behind one NAT address"`
	LoginBurst      int `yaml:"login_burst" usage:"logins and authorization requests a client address may start at once before logins_per_minute applies"`
	MaxAddresses    int `yaml:"max_addresses" usage:"client addresses each rate limiter remembers; bounds its memory (about 100 bytes each); when full, the addresses furthest from their limit are forgotten first"`
}

// TracingConfig turns on OpenTelemetry tracing (off by default).
type TracingConfig struct {
	Enabled     bool    `yaml:"enabled" usage:"export OpenTelemetry traces and propagate W3C traceparent to the upstream"`
	Endpoint    string  `yaml:"endpoint" usage:"OTLP/HTTP endpoint, e.g. http://otel-collector:4318 (default: the OTEL_EXPORTER_OTLP_* variables)"`
	SampleRatio float64 `yaml:"sample_ratio" usage:"fraction of new traces sampled (parent decisions are honoured)"`
}

// Defaults returns the configuration used where nothing else is set.
func Defaults() Config {
	return Config{
		Listen:             ":15080",
		AdminListen:        ":15090",
		Upstream:           "http://127.0.0.1:8080",
		AuthMode:           "oidc",
		LogLevel:           "info",
		ShutdownGrace:      30 * time.Second,
		RequestBodyTimeout: 10 * time.Second,
		OIDC: OIDCConfig{
			Scopes:         []string{"openid", "profile", "email"},
			GroupsClaim:    "groups",
			DiscoveryRetry: 30 * time.Second,
		},
		Session: SessionConfig{
			Store:         "memory",
			TTL:           12 * time.Hour,
			IdleTimeout:   time.Hour,
			MaxPerUser:    10,
			LimitPolicy:   "evict-oldest",
			RefreshBefore: time.Minute,
			LocalCacheTTL: 5 * time.Second,
		},
		Redis:   RedisConfig{KeyPrefix: "mcp-oidc-proxy:"},
		Headers: HeadersConfig{Preset: "default"},
		UpstreamPolicy: UpstreamConfig{
			RetryAttempts:   3,
			BreakerFailures: 5,
			BreakerOpenFor:  5 * time.Second,
		},
		Tracing: TracingConfig{SampleRatio: 1},
		RateLimit: RateLimitConfig{
			LoginsPerMinute: 60,
			LoginBurst:      60,
			MaxAddresses:    10000,
		},
		MCPPath: "/mcp",
		Policy: PolicyConfig{
			Default:      "deny",
			MaxBodyBytes: 1 << 20,
			MaxListBytes: 8 << 20,
		},
		Audit: AuditConfig{
			RedactKeys: []string{"password", "secret", "token", "api_key", "apikey", "authorization", "credential", "private_key"},
		},
		MCPSession: MCPSessionConfig{
			TTL:        24 * time.Hour,
			HopTimeout: 5 * time.Second,
		},
		TokenExchange: TokenExchangeConfig{
			Header:         "X-Downstream-Token",
			ExpiryMargin:   30 * time.Second,
			FailureBackoff: 5 * time.Second,
		},
		OAuth: OAuthConfig{
			Mode:                    "facade",
			AccessTokenTTL:          10 * time.Minute,
			RefreshTokenTTL:         30 * 24 * time.Hour,
			RefreshTokenMaxLifetime: 30 * 24 * time.Hour,
			UpstreamRecheckInterval: time.Hour,
			RegistrationsPerMinute:  10,
		},
	}
}
