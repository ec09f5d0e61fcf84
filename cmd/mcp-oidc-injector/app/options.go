// Package app is the injector's command: options from flags and environment,
// and Run, which wires the controller-runtime manager, the webhook server,
// the certificates and the health and metrics endpoints. main only calls
// Main; tests call ParseOptions and Run directly.
package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
)

// EnvPrefix prefixes the environment variable of every flag:
// --sidecar-image is also MCP_OIDC_INJECTOR_SIDECAR_IMAGE.
const EnvPrefix = "MCP_OIDC_INJECTOR_"

// Certificate modes.
const (
	CertModeSelfManaged = "self-managed"
	CertModeExternal    = "external"
)

// Options are the injector's settings. Flags win over environment, which
// wins over the defaults.
type Options struct {
	SidecarImage         string
	ImagePullPolicy      string
	DefaultMode          string
	RebindWhenRestricted bool
	NativeSidecars       string
	ProxyCPURequest      string
	ProxyMemoryRequest   string
	ProxyCPULimit        string
	ProxyMemoryLimit     string
	ProxyDefaultsFile    string
	// DrainDelay is the preStop sleep of injected pods (inject.Settings).
	DrainDelay time.Duration
	// RedisSecret gives every sidecar its Redis credentials from a Secret
	// of that name in the pod's own namespace.
	RedisSecret inject.RedisSecret

	CertMode        string
	CertDir         string
	CertSecretName  string
	CertExtraNames  []string
	CALifetime      time.Duration
	ServingLifetime time.Duration
	CertResync      time.Duration
	CAPublishGrace  time.Duration
	CertWatchPoll   time.Duration

	WebhookConfigName  string
	WebhookServiceName string
	WebhookHost        string
	WebhookPort        int
	MetricsBindAddress string
	HealthBindAddress  string
	Namespace          string
	LogLevel           string
}

// FlagSet returns the injector's flags bound to o, with their defaults.
// getenv supplies POD_NAMESPACE for --namespace's default.
func (o *Options) FlagSet(getenv func(string) string) *flag.FlagSet {
	fs := flag.NewFlagSet("mcp-oidc-injector", flag.ContinueOnError)
	fs.StringVar(&o.SidecarImage, "sidecar-image", "", "image of the injected mcp-oidc-proxy sidecar (required)")
	fs.StringVar(&o.ImagePullPolicy, "image-pull-policy", string(corev1.PullIfNotPresent), "pull policy of the injected containers: Always, IfNotPresent or Never")
	fs.StringVar(&o.DefaultMode, "default-mode", string(inject.ModeRedirect), "port takeover mode for pods without the mode annotation: redirect or rebind")
	fs.BoolVar(&o.RebindWhenRestricted, "rebind-when-restricted", false, "apply rebind instead of refusing redirect in namespaces that enforce the baseline or restricted Pod Security level")
	fs.StringVar(&o.NativeSidecars, "native-sidecars", "auto", "inject the proxy as a native sidecar: auto (from the API server version, >= 1.29), true or false")
	fs.StringVar(&o.ProxyCPURequest, "proxy-cpu-request", "50m", "default CPU request of the proxy container (empty: none)")
	fs.StringVar(&o.ProxyMemoryRequest, "proxy-memory-request", "64Mi", "default memory request of the proxy container (empty: none)")
	fs.StringVar(&o.ProxyCPULimit, "proxy-cpu-limit", "", "default CPU limit of the proxy container (empty: none)")
	fs.StringVar(&o.ProxyMemoryLimit, "proxy-memory-limit", "256Mi", "default memory limit of the proxy container (empty: none)")
	fs.DurationVar(&o.DrainDelay, "drain-delay", 5*time.Second, "how long an injected pod keeps serving once its deletion began, before its app gets SIGTERM (a preStop hook on the sidecar's drain endpoint, which moves client connections to pods that stay), at most half the pod's terminationGracePeriodSeconds; 0: none")
	fs.StringVar(&o.ProxyDefaultsFile, "proxy-defaults-file", "", "YAML file of cluster-wide, non-secret sidecar configuration; refused if it holds secrets")
	fs.StringVar(&o.RedisSecret.Name, "redis-secret-name", "", "Secret, in each injected pod's own namespace, giving every sidecar its Redis URL or password (replacing the pod Secret's redis-url and redis-password); it must exist there (empty: none)")
	fs.StringVar(&o.RedisSecret.URLKey, "redis-secret-url-key", "", "key of --redis-secret-name holding a redis:// or rediss:// URL (REDIS_URL; empty: none)")
	fs.StringVar(&o.RedisSecret.PasswordKey, "redis-secret-password-key", "", "key of --redis-secret-name holding the Redis password (REDIS_PASSWORD; empty: none)")
	fs.StringVar(&o.CertMode, "cert-mode", CertModeSelfManaged, "self-managed (own CA in a Secret, patches caBundle, rotates) or external (certificates mounted, e.g. from cert-manager)")
	fs.StringVar(&o.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory holding tls.crt and tls.key of the webhook server")
	fs.StringVar(&o.CertSecretName, "cert-secret-name", "mcp-oidc-injector-certs", "Secret holding the self-managed CA and serving certificate")
	fs.Func("cert-extra-names", "comma-separated extra DNS names or IPs of the self-managed serving certificate", func(v string) error {
		o.CertExtraNames = splitList(v)
		return nil
	})
	fs.DurationVar(&o.CALifetime, "cert-ca-lifetime", 365*24*time.Hour, "lifetime of the self-managed CA (renewed at 2/3)")
	fs.DurationVar(&o.ServingLifetime, "cert-serving-lifetime", 90*24*time.Hour, "lifetime of the self-managed serving certificate (renewed at 2/3)")
	fs.DurationVar(&o.CertResync, "cert-resync", 10*time.Second, "how often the self-managed certificates, the Secret and the caBundle are checked")
	fs.DurationVar(&o.CAPublishGrace, "cert-publish-grace", 30*time.Second, "how long a new CA is in the caBundle before serving certificates switch to it")
	fs.DurationVar(&o.CertWatchPoll, "cert-watch-interval", 10*time.Second, "how often the webhook server re-reads its certificate files (besides file events)")
	fs.StringVar(&o.WebhookConfigName, "webhook-config-name", "mcp-oidc-injector", "MutatingWebhookConfiguration whose caBundle the self-managed mode patches")
	fs.StringVar(&o.WebhookServiceName, "webhook-service-name", "mcp-oidc-injector", "Service in front of the webhook (names of the serving certificate)")
	fs.StringVar(&o.WebhookHost, "webhook-host", "", "address the webhook server listens on (empty: all)")
	fs.IntVar(&o.WebhookPort, "webhook-port", 9443, "port of the TLS webhook server (/mutate-v1-pod)")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables)")
	fs.StringVar(&o.HealthBindAddress, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&o.Namespace, "namespace", getenv("POD_NAMESPACE"), "namespace of the injector (default $POD_NAMESPACE)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	return fs
}

// ParseOptions reads args and the environment (getenv) into Options and
// validates them, returning every problem at once.
func ParseOptions(args []string, getenv func(string) string) (Options, error) {
	var o Options
	fs := o.FlagSet(getenv)
	fs.SetOutput(io.Discard)
	var errs []error
	// Environment first, then flags on top.
	fs.VisitAll(func(f *flag.Flag) {
		name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(getenv, name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	errs = append(errs, o.validate()...)
	return o, errors.Join(errs...)
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func (o *Options) validate() []error {
	var errs []error
	bad := func(flag, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, a...)))
	}
	if o.SidecarImage == "" {
		bad("sidecar-image", "required")
	}
	switch corev1.PullPolicy(o.ImagePullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("image-pull-policy", "%q is not Always, IfNotPresent or Never", o.ImagePullPolicy)
	}
	switch inject.Mode(o.DefaultMode) {
	case inject.ModeRedirect, inject.ModeRebind:
	default:
		bad("default-mode", "%q is not redirect or rebind", o.DefaultMode)
	}
	switch o.NativeSidecars {
	case "auto", "true", "false":
	default:
		bad("native-sidecars", "%q is not auto, true or false", o.NativeSidecars)
	}
	if o.DrainDelay < 0 || o.DrainDelay > config.DrainMaxSeconds*time.Second {
		bad("drain-delay", "%s is not between 0 (no drain) and %ds", o.DrainDelay, config.DrainMaxSeconds)
	}
	for flag, v := range map[string]string{"proxy-cpu-request": o.ProxyCPURequest, "proxy-memory-request": o.ProxyMemoryRequest,
		"proxy-cpu-limit": o.ProxyCPULimit, "proxy-memory-limit": o.ProxyMemoryLimit} {
		if v == "" {
			continue
		}
		if _, err := resource.ParseQuantity(v); err != nil {
			bad(flag, "%q is not a Kubernetes quantity", v)
		}
	}
	errs = append(errs, o.validateRedisSecret()...)
	switch o.CertMode {
	case CertModeSelfManaged:
		if o.Namespace == "" {
			bad("namespace", "required in self-managed cert mode (set it or POD_NAMESPACE)")
		}
		for flag, v := range map[string]string{"cert-secret-name": o.CertSecretName,
			"webhook-config-name": o.WebhookConfigName, "webhook-service-name": o.WebhookServiceName} {
			if v == "" {
				bad(flag, "required in self-managed cert mode")
			}
		}
		if o.ServingLifetime >= o.CALifetime {
			bad("cert-serving-lifetime", "must be shorter than --cert-ca-lifetime")
		}
		for flag, v := range map[string]time.Duration{"cert-ca-lifetime": o.CALifetime, "cert-serving-lifetime": o.ServingLifetime,
			"cert-resync": o.CertResync, "cert-publish-grace": o.CAPublishGrace} {
			if v <= 0 {
				bad(flag, "must be positive")
			}
		}
	case CertModeExternal:
	default:
		bad("cert-mode", "%q is not self-managed or external", o.CertMode)
	}
	if o.CertDir == "" {
		bad("cert-dir", "required")
	}
	if o.CertWatchPoll <= 0 {
		bad("cert-watch-interval", "must be positive")
	}
	if o.WebhookPort <= 0 || o.WebhookPort > 65535 {
		bad("webhook-port", "%d is not a port", o.WebhookPort)
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q is not debug, info, warn or error", o.LogLevel)
	}
	return errs
}

func (o *Options) validateRedisSecret() []error {
	var errs []error
	r := o.RedisSecret
	if r.Name == "" {
		for flag, v := range map[string]string{"redis-secret-url-key": r.URLKey, "redis-secret-password-key": r.PasswordKey} {
			if v != "" {
				errs = append(errs, fmt.Errorf("--%s: needs --redis-secret-name", flag))
			}
		}
		return errs
	}
	for _, msg := range validation.IsDNS1123Subdomain(r.Name) {
		errs = append(errs, fmt.Errorf("--redis-secret-name: %q is not a Secret name: %s", r.Name, msg))
	}
	if r.URLKey == "" && r.PasswordKey == "" {
		errs = append(errs, errors.New("--redis-secret-name: needs --redis-secret-url-key or --redis-secret-password-key"))
	}
	for flag, v := range map[string]string{"redis-secret-url-key": r.URLKey, "redis-secret-password-key": r.PasswordKey} {
		if v == "" {
			continue
		}
		for _, msg := range validation.IsConfigMapKey(v) {
			errs = append(errs, fmt.Errorf("--%s: %q is not a Secret key: %s", flag, v, msg))
		}
	}
	return errs
}

// Resources are the proxy's default requests and limits.
func (o *Options) Resources() corev1.ResourceRequirements {
	var r corev1.ResourceRequirements
	set := func(list *corev1.ResourceList, name corev1.ResourceName, v string) {
		if v == "" {
			return
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = resource.MustParse(v) // validated
	}
	set(&r.Requests, corev1.ResourceCPU, o.ProxyCPURequest)
	set(&r.Requests, corev1.ResourceMemory, o.ProxyMemoryRequest)
	set(&r.Limits, corev1.ResourceCPU, o.ProxyCPULimit)
	set(&r.Limits, corev1.ResourceMemory, o.ProxyMemoryLimit)
	return r
}

// ErrSecretInDefaults means the proxy defaults file holds a secret, which
// would be copied literally into every injected pod spec.
var ErrSecretInDefaults = errors.New("secrets must come from the pod's Secret (mcp-oidc-proxy.io/secret), not the cluster defaults")

// LoadProxyDefaults reads the cluster-wide sidecar defaults and refuses any
// secret in them, and any document the sidecar itself cannot read (an
// unknown key, a value of the wrong type): every injected sidecar would
// refuse to start with it.
func LoadProxyDefaults(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading proxy defaults: %w", err)
	}
	if err := CheckProxyDefaults(data); err != nil {
		return "", fmt.Errorf("proxy defaults %s: %w", path, err)
	}
	// The sidecar's own loader, as it reads them from its environment.
	// Only decoding matters here: defaults are a partial configuration.
	if _, err := config.Load(config.Source{
		Env:      []string{config.ClusterDefaultsEnv + "=" + string(data)},
		ReadFile: func(name string) ([]byte, error) { return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist) },
	}); err != nil && !isFieldErrors(err) {
		return "", fmt.Errorf("proxy defaults %s: the sidecar cannot read them: %w", path, err)
	}
	return string(data), nil
}

// isFieldErrors reports whether err holds only problems with individual
// settings (config.FieldError), which config.Load returns alongside a
// configuration.
func isFieldErrors(err error) bool {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		var fe *config.FieldError
		return errors.As(err, &fe)
	}
	for _, e := range j.Unwrap() {
		if !isFieldErrors(e) {
			return false
		}
	}
	return true
}

// SecretKeyNames are the keys that hold secrets, at any depth, sorted: the
// last element of every setting the sidecar's configuration marks secret
// (config.SecretFields), so this list cannot drift from the configuration.
// A secret setting named *url (redis.url) is secret for the password it may
// carry, which the URL check catches; the URL itself is fine. Their *_file
// variants are paths, not secrets. The Helm chart applies the same rule
// (mcp-oidc-proxy.secretPaths) to this very list, generated into
// templates/_contract.tpl by hack/genchart.
//
//go:generate go run ../../../hack/genchart -w ../../../charts/mcp-oidc-proxy/templates/_contract.tpl
func SecretKeyNames() []string {
	keys := map[string]bool{}
	for _, p := range config.SecretFields() {
		key := p[strings.LastIndex(p, ".")+1:]
		if !strings.HasSuffix(key, "url") {
			keys[key] = true
		}
	}
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// CheckProxyDefaults parses the YAML and refuses secrets: every setting the
// sidecar's configuration marks secret (by its key, at any depth) and any
// *url with a password in it (redis.url).
func CheckProxyDefaults(data []byte) error {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("parsing YAML: %w", err)
	}
	if doc == nil {
		return nil
	}
	if _, ok := doc.(map[string]any); !ok {
		return errors.New("must be a YAML mapping")
	}
	secret := map[string]bool{}
	for _, k := range SecretKeyNames() {
		secret[k] = true
	}
	var errs []error
	walk("", doc, func(path, key string, v any) {
		if s, ok := v.(string); (ok && s == "") || v == nil {
			return
		}
		if secret[key] {
			errs = append(errs, fmt.Errorf("%s: %w", path, ErrSecretInDefaults))
			return
		}
		if s, ok := v.(string); ok && strings.HasSuffix(key, "url") && urlHasPassword(s) {
			errs = append(errs, fmt.Errorf("%s: a URL with a password: %w", path, ErrSecretInDefaults))
		}
	})
	return errors.Join(errs...)
}

func walk(prefix string, v any, visit func(path, key string, v any)) {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			visit(p, k, child)
			walk(p, child, visit)
		}
	case []any:
		for i, child := range t {
			walk(fmt.Sprintf("%s[%d]", prefix, i), child, visit)
		}
	}
}

// urlHasPassword reports whether s is a URL whose user info holds a
// password (redis://:pw@host, redis://user:pw@host).
func urlHasPassword(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return false
	}
	pw, ok := u.User.Password()
	return ok && pw != ""
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
