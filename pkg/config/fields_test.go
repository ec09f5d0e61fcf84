package config

import (
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/cookiename"
)

// TestFields guards the generated --help and README table: every setting is
// documented and reachable by exactly one flag and its own env names.
func TestFields(t *testing.T) {
	fields := Fields()
	if len(fields) < 50 {
		t.Fatalf("only %d fields; the walk over Config lost some", len(fields))
	}
	byPath := map[string]Field{}
	flags := map[string]string{"config": "--config", "version": "--version", "help": "-help", "h": "-h"}
	envs := map[string]string{ConfigFileEnv: "--config"}
	for _, f := range fields {
		if strings.TrimSpace(f.Usage) == "" {
			t.Errorf("%s has no usage text", f.Path)
		}
		if _, dup := byPath[f.Path]; dup {
			t.Errorf("duplicate path %s", f.Path)
		}
		byPath[f.Path] = f
		if other, dup := flags[f.Flag]; dup {
			t.Errorf("flag --%s of %s is also used by %s", f.Flag, f.Path, other)
		}
		flags[f.Flag] = f.Path
		if len(f.Env) == 0 || f.Env[0] != EnvPrefix+strings.ToUpper(strings.ReplaceAll(f.Path, ".", "_")) {
			t.Errorf("%s: derived env name missing or not first: %v", f.Path, f.Env)
		}
		for _, e := range f.Env {
			if other, dup := envs[e]; dup {
				t.Errorf("env %s of %s is also used by %s", e, f.Path, other)
			}
			envs[e] = f.Path
		}
		if f.Type() == "struct" || f.Type() == "" {
			t.Errorf("%s has no scalar type: %s", f.Path, f.Type())
		}
	}
	for _, f := range fields {
		if !f.Secret {
			continue
		}
		ff, ok := byPath[f.Path+"_file"]
		if !ok {
			t.Errorf("secret %s has no %s_file variant for mounted Secrets", f.Path, f.Path)
			continue
		}
		if ff.Type() != "string" || ff.Secret {
			t.Errorf("%s must be a plain string path (type %s, secret %v)", ff.Path, ff.Type(), ff.Secret)
		}
	}
	// The file variants of the original env names exist too.
	for _, e := range []string{"OIDC_CLIENT_SECRET_FILE", "COOKIE_SECRET_FILE", "REDIS_URL_FILE", "REDIS_PASSWORD_FILE"} {
		if _, ok := envs[e]; !ok {
			t.Errorf("env %s not accepted", e)
		}
	}
}

func TestFieldsMetadata(t *testing.T) {
	byPath := map[string]Field{}
	for _, f := range Fields() {
		byPath[f.Path] = f
	}
	tests := []struct {
		path, flag, typ, def string
		secret, reload       bool
	}{
		{"listen", "listen", "string", ":15080", false, false},
		{"log_level", "log-level", "string", "info", false, true},
		{"oidc.client_secret", "oidc-client-secret", "string", "", true, false},
		{"oidc.scopes", "oidc-scopes", "list", "openid,profile,email", false, false},
		{"session.ttl", "session-ttl", "duration", "12h0m0s", false, false},
		{"session.max_per_user", "session-max-per-user", "int", "10", false, false},
		{"tracing.sample_ratio", "tracing-sample-ratio", "float64", "1", false, false},
		{"authz.allowed_emails", "authz-allowed-emails", "list", "", false, true},
		{"redis.url", "redis-url", "string", "", true, false},
		{"oidc.use_userinfo", "oidc-use-userinfo", "bool", "", false, false},
	}
	for _, tt := range tests {
		f, ok := byPath[tt.path]
		if !ok {
			t.Errorf("no field %s", tt.path)
			continue
		}
		if f.Flag != tt.flag || f.Type() != tt.typ || f.Default != tt.def || f.Secret != tt.secret || f.Reload != tt.reload {
			t.Errorf("%s: flag %q type %q default %q secret %v reload %v; want %q %q %q %v %v",
				tt.path, f.Flag, f.Type(), f.Default, f.Secret, f.Reload, tt.flag, tt.typ, tt.def, tt.secret, tt.reload)
		}
	}
}

// TestSecretFields checks that SecretFields lists exactly the settings
// tagged secret, and none of their *_file variants.
func TestSecretFields(t *testing.T) {
	got := map[string]bool{}
	for _, p := range SecretFields() {
		got[p] = true
	}
	for _, f := range Fields() {
		if f.Secret != got[f.Path] {
			t.Errorf("%s: secret %v, listed %v", f.Path, f.Secret, got[f.Path])
		}
		if strings.HasSuffix(f.Path, "_file") && got[f.Path] {
			t.Errorf("%s is a path, not a secret", f.Path)
		}
	}
	for _, want := range []string{"oidc.client_secret", "session.cookie_secret", "redis.url", "redis.password", "oauth.signing_keys", "oauth.introspection_secret"} {
		if !got[want] {
			t.Errorf("%s missing from %v", want, SecretFields())
		}
	}
}

// The usage text of session.cookie_name (a struct tag, so it cannot use the
// constants) names the defaults package cookiename really applies.
func TestCookieNameUsageNamesTheDefaults(t *testing.T) {
	for _, f := range Fields() {
		if f.Path != "session.cookie_name" {
			continue
		}
		for _, name := range []string{cookiename.Default(false), cookiename.Default(true)} {
			if !strings.Contains(f.Usage, name) {
				t.Errorf("usage %q does not name the default %q", f.Usage, name)
			}
		}
		return
	}
	t.Fatal("no session.cookie_name field")
}
