package inject

import (
	"strings"
	"sync"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

// Injector is Mutate for one set of Settings, with the work that depends on
// the Settings alone done once by New: the sidecar settings the injector
// writes (pkg/config finds each by reflecting over the whole Config), the
// cluster defaults with their allowed hosts, and the configuration-source
// check, remembered for each combination of what a pod adds to it. The
// Settings change only at start-up, so the webhook keeps one Injector; an
// admission then costs only what depends on the pod. It is safe for
// concurrent use.
type Injector struct {
	s Settings
	f sidecarFields
	// defaults is clusterDefaults(s.ProxyDefaults), the value of the
	// sidecar's config.ClusterDefaultsEnv; defaultsErr is its error,
	// returned where the proxy container is built, as before.
	defaults    string
	defaultsErr error
	// noDefaults is emptyDefaults(s.ProxyDefaults).
	noDefaults bool
	sources    *sourceChecks
}

// sidecarFields are the sidecar settings the injector names, resolved once.
type sidecarFields struct {
	listen, adminListen, upstream, logLevel, memoryLimit, advertise config.Field
	// podSecretKeys is config.PodSecretKeys(); secretKey maps each
	// setting's path to its key.
	podSecretKeys []config.PodSecretKey
	secretKey     map[string]string
	// redisKeys is s.RedisSecret.keys().
	redisKeys map[string]string
}

// New returns the Injector for s. It never fails: a problem with the
// Settings (cluster defaults that are not YAML) is reported by Mutate, for
// every pod it would inject, exactly as the package's Mutate reports it.
func New(s Settings) *Injector {
	in := &Injector{
		s: s,
		f: sidecarFields{
			listen:        listenSetting(),
			advertise:     advertiseSetting(),
			adminListen:   adminListenSetting(),
			upstream:      upstreamSetting(),
			logLevel:      logLevelSetting(),
			memoryLimit:   memoryLimitSetting(),
			podSecretKeys: config.PodSecretKeys(),
			secretKey:     map[string]string{},
			redisKeys:     s.RedisSecret.keys(),
		},
		noDefaults: emptyDefaults(s.ProxyDefaults),
		sources:    &sourceChecks{results: map[string][]error{}},
	}
	for _, k := range in.f.podSecretKeys {
		in.f.secretKey[k.Setting.Path] = k.Key
	}
	in.defaults, in.defaultsErr = clusterDefaults(s.ProxyDefaults)
	return in
}

// maxSourceChecks bounds the remembered configuration-source checks. A
// result depends on the Settings and on what the pod adds (takeover mode,
// ports, log level), so a cluster needs a handful; pods with ever new ports
// cost a fresh check each, as every pod did before, and cannot grow memory.
const maxSourceChecks = 256

// sourceChecks remembers the problems config.LoadValidated reported for each
// sidecar command line and log level (the inputs the pod adds to the
// Injector's fixed cluster defaults). The result is a pure function of
// those inputs, so a remembered one is exactly what a fresh load would say.
type sourceChecks struct {
	mu      sync.Mutex
	results map[string][]error
}

// problems returns load(), remembered under the pod's inputs args and
// logLevel. The returned slice is shared: callers must not modify it.
func (c *sourceChecks) problems(args []string, logLevel string, load func() []error) []error {
	key := strings.Join(args, "\x00") + "\x00" + logLevel
	c.mu.Lock()
	r, ok := c.results[key]
	c.mu.Unlock()
	if ok {
		return r
	}
	r = load()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.results) >= maxSourceChecks {
		for k := range c.results {
			delete(c.results, k)
			break
		}
	}
	c.results[key] = r
	return r
}
