package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ConfigFileEnv names the configuration file when --config is not given.
const ConfigFileEnv = EnvPrefix + "CONFIG"

// ClusterDefaultsEnv carries cluster-wide defaults (YAML, same format as the
// file) that the injector renders into every sidecar. They rank just above
// the built-in defaults: the pod's own file, environment and flags win.
const ClusterDefaultsEnv = EnvPrefix + "CLUSTER_DEFAULTS"

// Source is everything Load reads. Injecting it keeps Load a pure function of
// its inputs, so precedence is testable without touching the process.
type Source struct {
	// Args are the command-line arguments after the program name.
	Args []string
	// Env is the environment in os.Environ form.
	Env []string
	// ReadFile reads the config file and secret files (default os.ReadFile).
	ReadFile func(string) ([]byte, error)
}

// Loaded is a configuration together with where it came from.
type Loaded struct {
	Config Config
	// File is the configuration file used, if any.
	File string
	// ShowHelp and ShowVersion report the informational flags.
	ShowHelp, ShowVersion bool
}

// ErrHelp is returned when -h/--help was given; the caller prints usage.
var ErrHelp = flag.ErrHelp

// Load merges defaults, cluster defaults (ClusterDefaultsEnv), the YAML file,
// the environment and the flags, in increasing precedence, then reads secret
// files. It does not validate; call Validate on the result.
//
// When only individual settings are wrong (a value that does not parse, an
// unreadable secret file) Load returns their FieldErrors together with the
// configuration merged from everything else, so the caller can add
// Validate's findings and report every problem at once. Other errors (usage,
// an unreadable or malformed file) return a nil configuration.
func Load(src Source) (*Loaded, error) {
	if src.ReadFile == nil {
		src.ReadFile = os.ReadFile
	}
	env := envMap(src.Env)
	fields := Fields()

	fs, flagVals, configFlag, version := newFlagSet(fields)
	if err := fs.Parse(src.Args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (settings are flags like --upstream=URL)", fs.Arg(0))
	}

	out := &Loaded{Config: Defaults(), ShowVersion: *version}
	cfg := &out.Config

	if defaults := env[ClusterDefaultsEnv]; defaults != "" {
		if err := decodeYAML([]byte(defaults), cfg); err != nil {
			return nil, fmt.Errorf("cluster defaults (%s): %w", ClusterDefaultsEnv, err)
		}
	}

	out.File = *configFlag
	if out.File == "" {
		out.File = env[ConfigFileEnv]
	}
	if out.File != "" {
		data, err := src.ReadFile(out.File)
		if err != nil {
			return nil, fmt.Errorf("reading config file: %w", err)
		}
		if err := decodeYAML(data, cfg); err != nil {
			return nil, fmt.Errorf("config file %s: %w", out.File, err)
		}
	}

	var errs []error
	applyLegacyEnv(cfg, env)
	for _, f := range fields {
		// Later names in f.Env are aliases; the derived name wins, so
		// apply aliases first.
		for i := len(f.Env) - 1; i >= 0; i-- {
			if raw, ok := env[f.Env[i]]; ok {
				if err := f.set(cfg, raw); err != nil {
					errs = append(errs, &FieldError{Path: f.Path, Msg: fmt.Sprintf("environment %s: %v", f.Env[i], err)})
				}
			}
		}
	}
	fs.Visit(func(fl *flag.Flag) {
		f, ok := flagVals[fl.Name]
		if !ok {
			return
		}
		if err := f.set(cfg, fl.Value.String()); err != nil {
			errs = append(errs, &FieldError{Path: f.Path, Msg: fmt.Sprintf("flag --%s: %v", fl.Name, err)})
		}
	})
	errs = append(errs, readSecretFiles(cfg, src.ReadFile)...)
	cfg.MCPSession.AdvertiseAddress = advertiseAddress(cfg.MCPSession.AdvertiseAddress, env[PodIPEnv])
	return out, errors.Join(errs...)
}

// advertiseAddress completes a bare ":port" advertise address with the pod
// IP from the downward API (what the injector passes: the kubelet cannot
// bracket an IPv6 address in $(POD_IP):port, JoinHostPort can). Anything
// else is kept as given.
func advertiseAddress(addr, podIP string) string {
	if !strings.HasPrefix(addr, ":") || podIP == "" {
		return addr
	}
	return net.JoinHostPort(podIP, addr[1:])
}

// LoadValidated is how the sidecar turns its flags, environment and files
// into a configuration (its main calls it): Load, then Validate unless
// --help or --version was given. Settings that failed to parse and settings
// that parse but are invalid are reported together, so one run shows every
// problem. The injector's admission check and the contract test
// (test/contract) load injected pods through it too.
func LoadValidated(src Source) (*Loaded, error) {
	loaded, err := Load(src)
	if errors.Is(err, ErrHelp) || loaded == nil || (err == nil && loaded.ShowVersion) {
		return loaded, err
	}
	return loaded, errors.Join(err, loaded.Config.Validate())
}

// stringFlag records a flag's raw text; conversion happens in Field.set so
// that flags, environment and file share one parser.
type stringFlag struct {
	val    string
	isBool bool
}

func (s *stringFlag) String() string     { return s.val }
func (s *stringFlag) Set(v string) error { s.val = v; return nil }
func (s *stringFlag) IsBoolFlag() bool   { return s.isBool }

func newFlagSet(fields []Field) (*flag.FlagSet, map[string]Field, *string, *bool) {
	fs := flag.NewFlagSet("mcp-oidc-proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	byName := make(map[string]Field, len(fields))
	for _, f := range fields {
		fs.Var(&stringFlag{isBool: f.Type() == "bool"}, f.Flag, f.Usage)
		byName[f.Flag] = f
	}
	cfgFile := fs.String("config", "", "YAML configuration file (also "+ConfigFileEnv+")")
	version := fs.Bool("version", false, "print the version and exit")
	return fs, byName, cfgFile, version
}

func decodeYAML(data []byte, cfg *Config) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Getenv returns the value of name in s.Env, or "" when it is not set. When
// name is given twice the last one wins, as everywhere in Load; callers
// reading variables that are not settings (the pod name, the probe
// hand-over) use it so the environment has one reading.
func (s Source) Getenv(name string) string { return envMap(s.Env)[name] }

// envMap reads an environment in os.Environ form; the last of repeated
// names wins.
func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// applyLegacyEnv maps the original project's split host/port variables onto
// listen and upstream, so its deployments keep working unchanged. The
// derived MCP_OIDC_PROXY_LISTEN / _UPSTREAM names, applied later, win.
func applyLegacyEnv(cfg *Config, env map[string]string) {
	host, hasHost := env["MCP_HOST"]
	port, hasPort := env["MCP_PORT"]
	if hasHost || hasPort {
		// Either variable alone keeps the other half of the current
		// address, so MCP_PORT does not silently widen a host set in the
		// file to every interface.
		curHost, curPort, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			curHost, curPort = "", "15080"
		}
		if !hasHost {
			host = curHost
		}
		if !hasPort || port == "" {
			port = curPort
		}
		cfg.Listen = net.JoinHostPort(host, port)
	}
	thost, hasTHost := env["MCP_TARGET_HOST"]
	tport, hasTPort := env["MCP_TARGET_PORT"]
	if hasTHost || hasTPort {
		if thost == "" {
			thost = "127.0.0.1"
		}
		if tport == "" {
			tport = "8080"
		}
		scheme := "http"
		if strings.HasPrefix(thost, "http://") || strings.HasPrefix(thost, "https://") {
			scheme, thost, _ = strings.Cut(thost, "://")
		}
		cfg.Upstream = scheme + "://" + net.JoinHostPort(thost, tport)
	}
}

// readSecretFiles resolves every <name>_file setting into <name>. Giving both
// is an error: silently preferring one would hide a misconfiguration.
func readSecretFiles(cfg *Config, read func(string) ([]byte, error)) []error {
	byPath := map[string]Field{}
	for _, f := range Fields() {
		byPath[f.Path] = f
	}
	var paths []string
	for p := range byPath {
		if strings.HasSuffix(p, "_file") {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var errs []error
	for _, p := range paths {
		fileField := byPath[p]
		target, ok := byPath[strings.TrimSuffix(p, "_file")]
		if !ok || !target.Secret {
			continue
		}
		name := fileField.value(cfg).String()
		if name == "" {
			continue
		}
		if target.value(cfg).String() != "" {
			errs = append(errs, &FieldError{Path: p, Msg: fmt.Sprintf("set either %s or %s, not both", target.Path, p)})
			continue
		}
		data, err := read(name)
		if err != nil {
			errs = append(errs, &FieldError{Path: p, Msg: fmt.Sprintf("cannot read secret file: %v", err)})
			continue
		}
		target.value(cfg).Set(reflect.ValueOf(strings.TrimRight(string(data), "\r\n")))
	}
	return errs
}
