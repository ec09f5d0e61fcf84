package config

import (
	"errors"
	"io/fs"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// memFiles is an in-memory ReadFile: file name -> content. Missing names
// fail like os.ReadFile does.
type memFiles map[string]string

func (m memFiles) ReadFile(name string) ([]byte, error) {
	if s, ok := m[name]; ok {
		return []byte(s), nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// fieldErrors flattens a (possibly joined, possibly wrapped) error into its
// FieldErrors, failing the test on any leaf that is not one.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Errorf("error %q is not a *FieldError", e)
			return
		}
		out = append(out, fe)
	}
	if err != nil {
		walk(err)
	}
	return out
}

func errorPaths(t *testing.T, err error) []string {
	t.Helper()
	var paths []string
	for _, fe := range fieldErrors(t, err) {
		paths = append(paths, fe.Path)
	}
	sort.Strings(paths)
	return slices.Compact(paths)
}

// mustFieldError returns the FieldError for path in err, failing if absent.
func mustFieldError(t *testing.T, err error, path string) *FieldError {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error for %s, got nil", path)
	}
	for _, fe := range fieldErrors(t, err) {
		if fe.Path == path {
			return fe
		}
	}
	t.Fatalf("no FieldError for %s in %v", path, err)
	return nil
}

func mustLoad(t *testing.T, src Source) *Loaded {
	t.Helper()
	l, err := Load(src)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return l
}

func TestLoadPrecedence(t *testing.T) {
	type setting struct {
		name string
		file string // YAML document setting the value
		env  string // NAME=value
		flag string // --name=value
		get  func(*Config) any
		def  any
		// values at the file, env and flag layers
		fileV, envV, flagV any
	}
	settings := []setting{
		{
			name: "string", get: func(c *Config) any { return c.OIDC.GroupsClaim },
			file: "oidc:\n  groups_claim: roles\n", env: "MCP_OIDC_PROXY_OIDC_GROUPS_CLAIM=team", flag: "--oidc-groups-claim=grp",
			def: "groups", fileV: "roles", envV: "team", flagV: "grp",
		},
		{
			name: "bool", get: func(c *Config) any { return c.OIDC.UseUserInfo },
			file: "oidc:\n  use_userinfo: true\n", env: "MCP_OIDC_PROXY_OIDC_USE_USERINFO=false", flag: "--oidc-use-userinfo",
			def: false, fileV: true, envV: false, flagV: true,
		},
		{
			name: "int", get: func(c *Config) any { return c.Session.MaxPerUser },
			file: "session:\n  max_per_user: 20\n", env: "MCP_OIDC_PROXY_SESSION_MAX_PER_USER=30", flag: "--session-max-per-user=40",
			def: 10, fileV: 20, envV: 30, flagV: 40,
		},
		{
			name: "duration", get: func(c *Config) any { return c.Session.TTL },
			file: "session:\n  ttl: 30s\n", env: "MCP_OIDC_PROXY_SESSION_TTL=5m", flag: "--session-ttl=2h",
			def: 12 * time.Hour, fileV: 30 * time.Second, envV: 5 * time.Minute, flagV: 2 * time.Hour,
		},
		{
			name: "list", get: func(c *Config) any { return c.Authz.AllowedEmails },
			file: "authz:\n  allowed_emails: [a@x.test]\n", env: "MCP_OIDC_PROXY_AUTHZ_ALLOWED_EMAILS= b@x.test , c@x.test", flag: "--authz-allowed-emails=d@x.test",
			def: []string(nil), fileV: []string{"a@x.test"}, envV: []string{"b@x.test", "c@x.test"}, flagV: []string{"d@x.test"},
		},
	}
	layers := []struct {
		name            string
		file, env, flag bool
	}{
		{"defaults", false, false, false},
		{"file", true, false, false},
		{"env", false, true, false},
		{"flag", false, false, true},
		{"file+env", true, true, false},
		{"file+flag", true, false, true},
		{"env+flag", false, true, true},
		{"file+env+flag", true, true, true},
	}
	for _, s := range settings {
		for _, l := range layers {
			t.Run(s.name+"/"+l.name, func(t *testing.T) {
				src := Source{ReadFile: memFiles{"/etc/proxy.yaml": s.file}.ReadFile}
				want := s.def
				if l.file {
					src.Args = append(src.Args, "--config", "/etc/proxy.yaml")
					want = s.fileV
				}
				if l.env {
					src.Env = append(src.Env, s.env)
					want = s.envV
				}
				if l.flag {
					src.Args = append(src.Args, s.flag)
					want = s.flagV
				}
				got := s.get(&mustLoad(t, src).Config)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("got %#v, want %#v", got, want)
				}
			})
		}
	}
}

func TestLoadConfigFileFromEnv(t *testing.T) {
	files := memFiles{"/a.yaml": "log_level: warn\n", "/b.yaml": "log_level: error\n"}
	l := mustLoad(t, Source{Env: []string{ConfigFileEnv + "=/a.yaml"}, ReadFile: files.ReadFile})
	if l.File != "/a.yaml" || l.Config.LogLevel != "warn" {
		t.Errorf("env config: file %q level %q", l.File, l.Config.LogLevel)
	}
	l = mustLoad(t, Source{Args: []string{"--config=/b.yaml"}, Env: []string{ConfigFileEnv + "=/a.yaml"}, ReadFile: files.ReadFile})
	if l.File != "/b.yaml" || l.Config.LogLevel != "error" {
		t.Errorf("--config must beat %s: file %q level %q", ConfigFileEnv, l.File, l.Config.LogLevel)
	}
	_, err := Load(Source{Args: []string{"--config=/missing.yaml"}, ReadFile: files.ReadFile})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing config file: got %v, want fs.ErrNotExist", err)
	}
}

func TestLoadOriginalEnvNames(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  []string
		args []string
		get  func(*Config) any
		want any
	}{
		{"MCP_HOST", "", []string{"MCP_HOST=127.0.0.1"}, nil, func(c *Config) any { return c.Listen }, "127.0.0.1:15080"},
		{"MCP_PORT", "", []string{"MCP_PORT=9000"}, nil, func(c *Config) any { return c.Listen }, ":9000"},
		{"MCP_HOST+MCP_PORT", "", []string{"MCP_HOST=0.0.0.0", "MCP_PORT=9000"}, nil, func(c *Config) any { return c.Listen }, "0.0.0.0:9000"},
		{"MCP_PORT keeps the file's host", "listen: 127.0.0.1:1111\n", []string{"MCP_PORT=9000"}, nil, func(c *Config) any { return c.Listen }, "127.0.0.1:9000"},
		{"MCP_HOST keeps the file's port", "listen: 127.0.0.1:1111\n", []string{"MCP_HOST=10.0.0.1"}, nil, func(c *Config) any { return c.Listen }, "10.0.0.1:1111"},
		{"derived listen beats MCP_PORT", "", []string{"MCP_PORT=9000", "MCP_OIDC_PROXY_LISTEN=:7000"}, nil, func(c *Config) any { return c.Listen }, ":7000"},
		{"MCP_TARGET_HOST", "", []string{"MCP_TARGET_HOST=mcp"}, nil, func(c *Config) any { return c.Upstream }, "http://mcp:8080"},
		{"MCP_TARGET_PORT", "", []string{"MCP_TARGET_PORT=3000"}, nil, func(c *Config) any { return c.Upstream }, "http://127.0.0.1:3000"},
		{"MCP_TARGET_HOST+PORT", "", []string{"MCP_TARGET_HOST=mcp.local", "MCP_TARGET_PORT=3000"}, nil, func(c *Config) any { return c.Upstream }, "http://mcp.local:3000"},
		{"MCP_TARGET_HOST with scheme", "", []string{"MCP_TARGET_HOST=https://mcp.local", "MCP_TARGET_PORT=443"}, nil, func(c *Config) any { return c.Upstream }, "https://mcp.local:443"},
		{"derived upstream beats MCP_TARGET_*", "", []string{"MCP_TARGET_HOST=mcp", "MCP_OIDC_PROXY_UPSTREAM=http://u:1"}, nil, func(c *Config) any { return c.Upstream }, "http://u:1"},
		{"original env beats file", "upstream: http://file:1\n", []string{"MCP_TARGET_HOST=env"}, nil, func(c *Config) any { return c.Upstream }, "http://env:8080"},
		{"AUTH_MODE", "", []string{"AUTH_MODE=bypass"}, nil, func(c *Config) any { return c.AuthMode }, "bypass"},
		{"OIDC_DISCOVERY_URL", "", []string{"OIDC_DISCOVERY_URL=https://idp.test"}, nil, func(c *Config) any { return c.OIDC.DiscoveryURL }, "https://idp.test"},
		{"OIDC_CLIENT_ID", "", []string{"OIDC_CLIENT_ID=legacy"}, nil, func(c *Config) any { return c.OIDC.ClientID }, "legacy"},
		{"derived beats OIDC_CLIENT_ID", "", []string{"MCP_OIDC_PROXY_OIDC_CLIENT_ID=new", "OIDC_CLIENT_ID=legacy"}, nil, func(c *Config) any { return c.OIDC.ClientID }, "new"},
		{"derived beats OIDC_CLIENT_ID in any order", "", []string{"OIDC_CLIENT_ID=legacy", "MCP_OIDC_PROXY_OIDC_CLIENT_ID=new"}, nil, func(c *Config) any { return c.OIDC.ClientID }, "new"},
		{"OIDC_CLIENT_SECRET", "", []string{"OIDC_CLIENT_SECRET=s3"}, nil, func(c *Config) any { return c.OIDC.ClientSecret }, "s3"},
		{"SESSION_STORE", "", []string{"SESSION_STORE=redis"}, nil, func(c *Config) any { return c.Session.Store }, "redis"},
		{"REDIS_URL", "", []string{"REDIS_URL=redis://r:6379/1"}, nil, func(c *Config) any { return c.Redis.URL }, "redis://r:6379/1"},
		{"LOG_LEVEL", "", []string{"LOG_LEVEL=debug"}, nil, func(c *Config) any { return c.LogLevel }, "debug"},
		{"derived beats LOG_LEVEL", "", []string{"LOG_LEVEL=debug", "MCP_OIDC_PROXY_LOG_LEVEL=warn"}, nil, func(c *Config) any { return c.LogLevel }, "warn"},
		{"flag beats original env", "", []string{"LOG_LEVEL=debug"}, []string{"--log-level", "error"}, func(c *Config) any { return c.LogLevel }, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := Source{Env: tt.env, ReadFile: memFiles{"/c.yaml": tt.file}.ReadFile}
			if tt.file != "" {
				src.Args = []string{"--config", "/c.yaml"}
			}
			src.Args = append(src.Args, tt.args...)
			if got := tt.get(&mustLoad(t, src).Config); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestLoadSecretFiles(t *testing.T) {
	files := memFiles{
		"/run/secrets/client": "s3cr3t\n",
		"/run/secrets/crlf":   "s3cr3t\r\n",
		"/c.yaml":             "oidc:\n  client_secret_file: /run/secrets/client\n",
		"/both.yaml":          "oidc:\n  client_secret: inline\n  client_secret_file: /run/secrets/client\n",
		"/missing.yaml":       "oidc:\n  client_secret_file: /run/secrets/nope\n",
	}
	ok := []struct {
		name string
		src  Source
	}{
		{"flag", Source{Args: []string{"--oidc-client-secret-file=/run/secrets/client"}}},
		{"original env", Source{Env: []string{"OIDC_CLIENT_SECRET_FILE=/run/secrets/client"}}},
		{"derived env", Source{Env: []string{"MCP_OIDC_PROXY_OIDC_CLIENT_SECRET_FILE=/run/secrets/client"}}},
		{"yaml", Source{Args: []string{"--config=/c.yaml"}}},
		{"crlf trimmed", Source{Args: []string{"--oidc-client-secret-file=/run/secrets/crlf"}}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.ReadFile = files.ReadFile
			if got := mustLoad(t, tt.src).Config.OIDC.ClientSecret; got != "s3cr3t" {
				t.Errorf("client secret %q, want s3cr3t", got)
			}
		})
	}

	// Every secret setting has a working _file variant.
	for _, f := range Fields() {
		if !f.Secret {
			continue
		}
		t.Run("file variant/"+f.Path, func(t *testing.T) {
			l := mustLoad(t, Source{Args: []string{"--" + f.Flag + "-file=/run/secrets/client"}, ReadFile: files.ReadFile})
			if got := f.value(&l.Config).String(); got != "s3cr3t" {
				t.Errorf("%s = %q, want s3cr3t", f.Path, got)
			}
		})
	}

	bad := []struct {
		name     string
		src      Source
		path     string
		contains []string
	}{
		{"value and file (env)", Source{Env: []string{"OIDC_CLIENT_SECRET=inline", "OIDC_CLIENT_SECRET_FILE=/run/secrets/client"}},
			"oidc.client_secret_file", []string{"oidc.client_secret ", "oidc.client_secret_file"}},
		{"value and file (yaml)", Source{Args: []string{"--config=/both.yaml"}},
			"oidc.client_secret_file", []string{"oidc.client_secret ", "oidc.client_secret_file"}},
		{"unreadable (flag)", Source{Args: []string{"--session-cookie-secret-file=/run/secrets/nope"}},
			"session.cookie_secret_file", []string{"session.cookie_secret_file", "/run/secrets/nope"}},
		{"unreadable (yaml)", Source{Args: []string{"--config=/missing.yaml"}},
			"oidc.client_secret_file", []string{"oidc.client_secret_file", "/run/secrets/nope"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.ReadFile = files.ReadFile
			_, err := Load(tt.src)
			mustFieldError(t, err, tt.path)
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "inline") {
				t.Errorf("error %q echoes the secret value", err)
			}
		})
	}
}

func TestLoadYAML(t *testing.T) {
	files := memFiles{
		"/empty.yaml":    "",
		"/blank.yaml":    "  \n\n",
		"/comment.yaml":  "# nothing configured yet\n",
		"/unknown.yaml":  "upstream: http://x:1\nlisen: :1\n",
		"/nested.yaml":   "oidc:\n  clientid: x\n",
		"/durs.yaml":     "session:\n  ttl: 30s\n  idle_timeout: 1h30m\nupstream_policy:\n  breaker_open_for: 250ms\n",
		"/baddur.yaml":   "session:\n  ttl: soon\n",
		"/intdur.yaml":   "session:\n  ttl: 30\n",
		"/badlist.yaml":  "public_paths: [\n",
		"/wrongtype.yml": "session:\n  max_per_user: many\n",
	}
	for _, name := range []string{"/empty.yaml", "/blank.yaml", "/comment.yaml"} {
		t.Run("empty "+name, func(t *testing.T) {
			l := mustLoad(t, Source{Args: []string{"--config", name}, ReadFile: files.ReadFile})
			if !reflect.DeepEqual(l.Config, Defaults()) {
				t.Errorf("empty file changed the defaults: %+v", l.Config)
			}
		})
	}
	t.Run("durations", func(t *testing.T) {
		c := mustLoad(t, Source{Args: []string{"--config", "/durs.yaml"}, ReadFile: files.ReadFile}).Config
		if c.Session.TTL != 30*time.Second || c.Session.IdleTimeout != 90*time.Minute || c.UpstreamPolicy.BreakerOpenFor != 250*time.Millisecond {
			t.Errorf("durations: ttl %v idle %v breaker %v", c.Session.TTL, c.Session.IdleTimeout, c.UpstreamPolicy.BreakerOpenFor)
		}
	})
	for _, tt := range []struct{ file, mention string }{
		{"/unknown.yaml", "lisen"},
		{"/nested.yaml", "clientid"},
		{"/baddur.yaml", "soon"},
		{"/intdur.yaml", "30"}, // a bare number would silently be nanoseconds
		{"/badlist.yaml", "/badlist.yaml"},
		{"/wrongtype.yml", "many"},
	} {
		t.Run("rejects "+tt.file, func(t *testing.T) {
			_, err := Load(Source{Args: []string{"--config", tt.file}, ReadFile: files.ReadFile})
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range []string{tt.mention, tt.file} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestLoadBadValues(t *testing.T) {
	tests := []struct {
		name     string
		src      Source
		path     string
		contains string
	}{
		{"env bool", Source{Env: []string{"MCP_OIDC_PROXY_OIDC_USE_USERINFO=maybe"}}, "oidc.use_userinfo", "MCP_OIDC_PROXY_OIDC_USE_USERINFO"},
		{"flag bool", Source{Args: []string{"--session-insecure-cookies=maybe"}}, "session.insecure_cookies", "--session-insecure-cookies"},
		{"env duration", Source{Env: []string{"MCP_OIDC_PROXY_SESSION_TTL=12"}}, "session.ttl", "MCP_OIDC_PROXY_SESSION_TTL"},
		{"flag duration", Source{Args: []string{"--shutdown-grace", "soon"}}, "shutdown_grace", "--shutdown-grace"},
		{"env int", Source{Env: []string{"MCP_OIDC_PROXY_REDIS_DB=one"}}, "redis.db", "MCP_OIDC_PROXY_REDIS_DB"},
		{"flag int", Source{Args: []string{"--session-max-per-user=1.5"}}, "session.max_per_user", "--session-max-per-user"},
		{"env float", Source{Env: []string{"MCP_OIDC_PROXY_TRACING_SAMPLE_RATIO=half"}}, "tracing.sample_ratio", "MCP_OIDC_PROXY_TRACING_SAMPLE_RATIO"},
		{"flag float", Source{Args: []string{"--tracing-sample-ratio=half"}}, "tracing.sample_ratio", "--tracing-sample-ratio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.src)
			fe := mustFieldError(t, err, tt.path)
			if !strings.Contains(fe.Error(), tt.contains) || !strings.HasPrefix(fe.Error(), tt.path+": ") {
				t.Errorf("error %q should start with %s and name %s", fe, tt.path, tt.contains)
			}
		})
	}

	for _, args := range [][]string{
		{"serve"},
		{"--upstream=http://x:1", "extra"},
		{"--oidc-use-userinfo", "false"}, // a bool flag takes no separate value
	} {
		t.Run("positional "+strings.Join(args, " "), func(t *testing.T) {
			_, err := Load(Source{Args: args})
			if err == nil || !strings.Contains(err.Error(), args[len(args)-1]) {
				t.Errorf("want an error naming %q, got %v", args[len(args)-1], err)
			}
		})
	}

	t.Run("unknown flag", func(t *testing.T) {
		if _, err := Load(Source{Args: []string{"--no-such-flag=1"}}); err == nil {
			t.Error("unknown flag accepted")
		}
	})

	t.Run("help", func(t *testing.T) {
		if _, err := Load(Source{Args: []string{"-h"}}); !errors.Is(err, ErrHelp) {
			t.Errorf("got %v, want ErrHelp", err)
		}
	})

	t.Run("all errors reported", func(t *testing.T) {
		_, err := Load(Source{
			Env: []string{
				"MCP_OIDC_PROXY_OIDC_USE_USERINFO=maybe",
				"MCP_OIDC_PROXY_REDIS_DB=one",
			},
			Args:     []string{"--session-ttl=soon", "--tracing-sample-ratio=half", "--redis-password-file=/nope"},
			ReadFile: memFiles{}.ReadFile,
		})
		want := []string{"oidc.use_userinfo", "redis.db", "redis.password_file", "session.ttl", "tracing.sample_ratio"}
		if got := errorPaths(t, err); !slices.Equal(got, want) {
			t.Errorf("error paths %v, want %v (err: %v)", got, want, err)
		}
	})
}

func TestClusterDefaultsRankBelowFileEnvAndFlags(t *testing.T) {
	defaults := "log_level: warn\nupstream: http://127.0.0.1:7000\noidc:\n  client_id: cluster\n  discovery_url: https://cluster.idp.invalid\nsession:\n  max_per_user: 3\n"
	tests := []struct {
		name  string
		src   Source
		check func(t *testing.T, c Config)
	}{
		{"defaults apply", Source{Env: []string{ClusterDefaultsEnv + "=" + defaults}}, func(t *testing.T, c Config) {
			if c.LogLevel != "warn" || c.OIDC.ClientID != "cluster" || c.Session.MaxPerUser != 3 || c.Upstream != "http://127.0.0.1:7000" {
				t.Errorf("cluster defaults not applied: %+v", c)
			}
		}},
		{"file beats cluster defaults", Source{
			Args:     []string{"--config", "/c.yaml"},
			Env:      []string{ClusterDefaultsEnv + "=" + defaults},
			ReadFile: func(string) ([]byte, error) { return []byte("oidc:\n  client_id: from-file\n"), nil },
		}, func(t *testing.T, c Config) {
			if c.OIDC.ClientID != "from-file" || c.OIDC.DiscoveryURL != "https://cluster.idp.invalid" {
				t.Errorf("client_id %q discovery %q: want file value and the untouched cluster default", c.OIDC.ClientID, c.OIDC.DiscoveryURL)
			}
		}},
		{"env and flags beat cluster defaults", Source{
			Args: []string{"--log-level", "debug"},
			Env:  []string{ClusterDefaultsEnv + "=" + defaults, "OIDC_CLIENT_ID=from-env"},
		}, func(t *testing.T, c Config) {
			if c.LogLevel != "debug" || c.OIDC.ClientID != "from-env" {
				t.Errorf("log level %q client %q", c.LogLevel, c.OIDC.ClientID)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Load(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, l.Config)
		})
	}
	if _, err := Load(Source{Env: []string{ClusterDefaultsEnv + "=nonsense_key: 1"}}); err == nil || !strings.Contains(err.Error(), ClusterDefaultsEnv) {
		t.Errorf("unknown key in cluster defaults: err = %v, want an error naming %s", err, ClusterDefaultsEnv)
	}
}

// Getenv reads the environment the way Load does: the last of repeated
// names wins, and an entry without "=" is ignored.
func TestSourceGetenv(t *testing.T) {
	src := Source{Env: []string{"A=1", "B=x=y", "A=2", "C", "EMPTY="}}
	tests := []struct{ name, want string }{
		{"A", "2"}, {"B", "x=y"}, {"C", ""}, {"EMPTY", ""}, {"MISSING", ""},
	}
	for _, tt := range tests {
		if got := src.Getenv(tt.name); got != tt.want {
			t.Errorf("Getenv(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
