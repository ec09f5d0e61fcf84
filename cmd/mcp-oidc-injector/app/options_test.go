package app

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseOptionsPrecedence(t *testing.T) {
	o, err := ParseOptions(
		[]string{"--default-mode=rebind", "--webhook-port=9000"},
		env(map[string]string{
			"POD_NAMESPACE":                   "inj",
			"MCP_OIDC_INJECTOR_SIDECAR_IMAGE": "img:env",
			"MCP_OIDC_INJECTOR_DEFAULT_MODE":  "redirect", // the flag wins
			"MCP_OIDC_INJECTOR_CERT_MODE":     "external",
		}))
	if err != nil {
		t.Fatal(err)
	}
	if o.SidecarImage != "img:env" || o.DefaultMode != "rebind" || o.WebhookPort != 9000 ||
		o.CertMode != CertModeExternal || o.Namespace != "inj" || o.MetricsBindAddress != ":8080" ||
		o.NativeSidecars != "auto" || o.CALifetime != 365*24*time.Hour {
		t.Errorf("options = %+v", o)
	}
	r := o.Resources()
	if q := r.Requests[corev1.ResourceMemory]; q.Cmp(resource.MustParse("64Mi")) != 0 {
		t.Errorf("memory request = %v", q.String())
	}
	if _, ok := r.Limits[corev1.ResourceCPU]; ok {
		t.Error("a CPU limit is set by default")
	}
}

func TestParseOptionsReportsEveryError(t *testing.T) {
	_, err := ParseOptions([]string{"--default-mode=nat", "--native-sidecars=maybe", "--proxy-cpu-limit=lots",
		"--cert-mode=self-managed", "--log-level=loud", "--drain-delay=-1s"}, env(nil))
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"--sidecar-image", "--default-mode", "--native-sidecars", "--proxy-cpu-limit", "--namespace", "--log-level", "--drain-delay"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}

func TestParseOptionsRedisSecret(t *testing.T) {
	base := []string{"--sidecar-image=img:1", "--cert-mode=external"}
	for _, tc := range []struct {
		name string
		args []string
		want inject.RedisSecret
		errs []string // each must appear; none: accepted
	}{
		{"none", nil, inject.RedisSecret{}, nil},
		{"password", []string{"--redis-secret-name=redis", "--redis-secret-password-key=redis-password"},
			inject.RedisSecret{Name: "redis", PasswordKey: "redis-password"}, nil},
		{"url and password", []string{"--redis-secret-name=redis.creds", "--redis-secret-url-key=url", "--redis-secret-password-key=pw"},
			inject.RedisSecret{Name: "redis.creds", URLKey: "url", PasswordKey: "pw"}, nil},
		{"name without a key", []string{"--redis-secret-name=redis"}, inject.RedisSecret{},
			[]string{"--redis-secret-name: needs --redis-secret-url-key or --redis-secret-password-key"}},
		{"keys without a name", []string{"--redis-secret-url-key=url", "--redis-secret-password-key=pw"}, inject.RedisSecret{},
			[]string{"--redis-secret-url-key: needs --redis-secret-name", "--redis-secret-password-key: needs --redis-secret-name"}},
		{"bad name", []string{"--redis-secret-name=Redis_Creds", "--redis-secret-password-key=pw"}, inject.RedisSecret{},
			[]string{`--redis-secret-name: "Redis_Creds" is not a Secret name`}},
		{"bad key", []string{"--redis-secret-name=redis", "--redis-secret-password-key=pass word"}, inject.RedisSecret{},
			[]string{`--redis-secret-password-key: "pass word" is not a Secret key`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOptions(append(append([]string{}, base...), tc.args...), env(nil))
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if o.RedisSecret != tc.want {
					t.Errorf("RedisSecret = %+v, want %+v", o.RedisSecret, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", o.RedisSecret)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
		})
	}
}

func TestCheckProxyDefaults(t *testing.T) {
	tests := []struct {
		name, yaml string
		refused    bool
	}{
		{"non-secret settings", "oidc:\n  discovery_url: https://idp\n  client_id: x\nredis:\n  url: redis://redis:6379/0\n", false},
		{"empty", "", false},
		{"secret file paths are fine", "oidc:\n  client_secret_file: /s/x\n", false},
		{"client secret", "oidc:\n  client_secret: s3cret\n", true},
		{"cookie secret", "session:\n  cookie_secret: s3cret\n", true},
		{"redis password", "redis:\n  password: s3cret\n", true},
		{"redis url with password", "redis:\n  url: redis://:s3cret@redis:6379\n", true},
		{"redis url with user and password", "redis:\n  url: rediss://u:s3cret@redis:6379\n", true},
		{"not a mapping", "- a\n", true},
		{"facade signing keys", "oauth: {signing_keys: s3cret}\n", true},
		{"introspection secret", "oauth:\n  introspection_secret: s3cret\n", true},
		{"signing keys file path is fine", "oauth:\n  signing_keys_file: /s/keys.pem\n", false},
		{"redis url with a user but no password", "redis:\n  url: redis://u@redis:6379\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckProxyDefaults([]byte(tc.yaml))
			if (err != nil) != tc.refused {
				t.Fatalf("err = %v, refused want %v", err, tc.refused)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error repeats the secret: %v", err)
			}
			if tc.refused && tc.name != "not a mapping" && !errors.Is(err, ErrSecretInDefaults) {
				t.Errorf("err = %v, want ErrSecretInDefaults", err)
			}
		})
	}
}

// TestCheckProxyDefaultsRefusesEverySecretSetting walks every setting the
// sidecar's configuration marks secret, so a new secret cannot slip into the
// cluster defaults (and from there into every pod's environment) unnoticed.
func TestCheckProxyDefaultsRefusesEverySecretSetting(t *testing.T) {
	var n int
	for _, f := range config.Fields() {
		if !f.Secret {
			continue
		}
		n++
		t.Run(f.Path, func(t *testing.T) {
			// A URL setting (redis.url) is secret for its password.
			values := []string{"s3cret", "redis://u:s3cret@host:6379"}
			if strings.HasSuffix(f.Path, "url") {
				values = values[1:]
			}
			for _, value := range values {
				doc := nest(strings.Split(f.Path, "."), value)
				err := CheckProxyDefaults([]byte(doc))
				if !errors.Is(err, ErrSecretInDefaults) {
					t.Fatalf("%s in the defaults file: err = %v, want ErrSecretInDefaults\n%s", f.Path, err, doc)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error repeats the secret: %v", err)
				}
			}
			// The *_file variant is a path, not a secret.
			fileDoc := nest(strings.Split(f.Path+"_file", "."), "/var/run/secrets/x")
			if err := CheckProxyDefaults([]byte(fileDoc)); err != nil {
				t.Errorf("%s_file refused: %v", f.Path, err)
			}
		})
	}
	if n < 6 {
		t.Fatalf("only %d secret settings found; the walk over the configuration lost some", n)
	}
}

// nest renders path: value as nested block YAML.
func nest(path []string, value string) string {
	var b strings.Builder
	for i, k := range path {
		b.WriteString(strings.Repeat("  ", i) + k + ":")
		if i == len(path)-1 {
			b.WriteString(" " + strconv.Quote(value))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestLoadProxyDefaultsRefusesAtStartup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "defaults.yaml")
	if err := os.WriteFile(path, []byte("session:\n  cookie_secret: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := ParseOptions([]string{"--sidecar-image=i", "--native-sidecars=true", "--namespace=n", "--proxy-defaults-file=" + path}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.settings(nil); !errors.Is(err, ErrSecretInDefaults) {
		t.Errorf("settings err = %v, want ErrSecretInDefaults", err)
	}
}

// Defaults the sidecar cannot decode stop the injector at startup, not
// every injected sidecar later.
func TestLoadProxyDefaultsRefusesWhatTheSidecarCannotRead(t *testing.T) {
	for _, tc := range []struct {
		doc, want string
	}{
		{"oidc:\n  issuer_url: https://login.example.com\n", "issuer_url"},
		{"session:\n  ttl: [1h]\n", "time.Duration"},
		{"oidc:\n  discovery_url: https://login.example.com\n", ""},
		// Values are judged with the pod's own settings, at admission.
		{"session:\n  store: disk\n", ""},
	} {
		path := filepath.Join(t.TempDir(), "defaults.yaml")
		if err := os.WriteFile(path, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadProxyDefaults(path)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q refused: %v", tc.doc, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "sidecar cannot read")):
			t.Errorf("%q: err = %v, want the sidecar's complaint about %s", tc.doc, err, tc.want)
		}
	}
}

func TestNativeSidecarsFor(t *testing.T) {
	for v, want := range map[string]bool{"v1.28.9": false, "v1.29.0": true, "v1.36.3": true, "v1.30.1-eks-abc": true} {
		got, err := NativeSidecarsFor(v)
		if err != nil || got != want {
			t.Errorf("NativeSidecarsFor(%s) = %v, %v; want %v", v, got, err, want)
		}
	}
	if _, err := NativeSidecarsFor("nonsense"); err == nil {
		t.Error("unparsable version accepted")
	}
}
