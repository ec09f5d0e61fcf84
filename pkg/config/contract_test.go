package config

import (
	"regexp"
	"slices"
	"testing"
	"time"
)

func TestFieldOf(t *testing.T) {
	for _, tc := range []struct {
		sel                  func(*Config) any
		path, flag, env, arg string
	}{
		{func(c *Config) any { return &c.Listen }, "listen", "listen", "MCP_OIDC_PROXY_LISTEN", "--listen=:1"},
		{func(c *Config) any { return &c.AdminListen }, "admin_listen", "admin-listen", "MCP_OIDC_PROXY_ADMIN_LISTEN", "--admin-listen=:1"},
		// The first field of a nested struct shares its address with the
		// struct: the type tells them apart.
		{func(c *Config) any { return &c.OIDC.DiscoveryURL }, "oidc.discovery_url", "oidc-discovery-url", "MCP_OIDC_PROXY_OIDC_DISCOVERY_URL", "--oidc-discovery-url=:1"},
		{func(c *Config) any { return &c.TLS.CertFile }, "tls.cert_file", "tls-cert-file", "MCP_OIDC_PROXY_TLS_CERT_FILE", "--tls-cert-file=:1"},
		{func(c *Config) any { return &c.LogLevel }, "log_level", "log-level", "MCP_OIDC_PROXY_LOG_LEVEL", "--log-level=:1"},
	} {
		f := FieldOf(tc.sel)
		if f.Path != tc.path || f.Flag != tc.flag || f.EnvName() != tc.env || f.Arg(":1") != tc.arg {
			t.Errorf("FieldOf = %s --%s %s %s, want %s --%s %s %s", f.Path, f.Flag, f.EnvName(), f.Arg(":1"), tc.path, tc.flag, tc.env, tc.arg)
		}
	}
}

func TestFieldOfRefusesWhatIsNotASetting(t *testing.T) {
	outside := ""
	for name, sel := range map[string]func(*Config) any{
		"a struct":          func(c *Config) any { return &c.OIDC },
		"not a pointer":     func(c *Config) any { return c.Listen },
		"outside Config":    func(*Config) any { return &outside },
		"a nil interface":   func(*Config) any { return nil },
		"the Config itself": func(c *Config) any { return c },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("FieldOf did not panic")
				}
			}()
			FieldOf(sel)
		})
	}
}

// Every secret setting can be given in the pod's Secret, under a distinct
// key that Kubernetes accepts as a Secret key.
func TestPodSecretKeysCoverEverySecret(t *testing.T) {
	keyRE := regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	keys := PodSecretKeys()
	var paths []string
	seen := map[string]bool{}
	for _, k := range keys {
		paths = append(paths, k.Setting.Path)
		if !keyRE.MatchString(k.Key) || len(k.Key) > 253 {
			t.Errorf("%s: %q is not a valid Secret key (tag podsecret)", k.Setting.Path, k.Key)
		}
		if seen[k.Key] {
			t.Errorf("Secret key %q used twice", k.Key)
		}
		seen[k.Key] = true
		if !k.Setting.Secret {
			t.Errorf("%s is fed from the Secret but not marked secret", k.Setting.Path)
		}
	}
	want := SecretFields()
	slices.Sort(paths)
	slices.Sort(want)
	if !slices.Equal(paths, want) {
		t.Errorf("pod Secret keys feed %v, want every secret setting %v", paths, want)
	}
	if !slices.IsSortedFunc(keys, func(a, b PodSecretKey) int {
		if a.Key < b.Key {
			return -1
		}
		return 1
	}) {
		t.Error("PodSecretKeys is not sorted by key")
	}
	// The keys users already have in their Secrets stay.
	for _, k := range []string{"client-secret", "cookie-secret", "redis-url", "redis-password"} {
		if !seen[k] {
			t.Errorf("Secret key %q disappeared", k)
		}
	}
}

func TestSubcommandArgs(t *testing.T) {
	if got, want := InitRedirectArgs(8080, 15080), []string{"init-redirect", "--port", "8080", "--to", "15080"}; !slices.Equal(got, want) {
		t.Errorf("InitRedirectArgs = %q, want %q", got, want)
	}
	if got, want := WaitArgs("http://127.0.0.1:15090/healthz", 2*time.Minute), []string{"wait", "--url", "http://127.0.0.1:15090/healthz", "--timeout", "2m0s"}; !slices.Equal(got, want) {
		t.Errorf("WaitArgs = %q, want %q", got, want)
	}
	if PodConfigFile != PodConfigDir+"/"+ConfigFileKey {
		t.Errorf("PodConfigFile %q is not in PodConfigDir", PodConfigFile)
	}
}
