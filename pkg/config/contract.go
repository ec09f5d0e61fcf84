package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"time"
)

// The contract between the injector and the sidecar. The injector writes
// these names into every pod spec it patches and the sidecar reads them, so
// both take them from here and a rename reaches both at once; the contract
// test (test/contract) loads every golden injected pod with the sidecar's
// own loader to prove it.

// BinaryPath is the sidecar binary's path inside its image (the image's
// entrypoint, see Dockerfile.sidecar); the injected init-redirect container
// and the classic sidecar's postStart hook run it by path.
const BinaryPath = "/mcp-oidc-proxy"

// ConfigFileKey is the key of the pod's ConfigMap (annotation
// mcp-oidc-proxy.io/config) that holds the configuration file.
const ConfigFileKey = "config.yaml"

// PodConfigDir is where the injector mounts the pod's ConfigMap in the
// sidecar; ConfigFileEnv points at PodConfigFile inside it. A directory
// mount (not subPath) lets the kubelet update the file, which the sidecar's
// reloader picks up.
const PodConfigDir = "/etc/mcp-oidc-proxy"

// PodConfigFile is the configuration file's path in an injected sidecar.
const PodConfigFile = PodConfigDir + "/" + ConfigFileKey

// Downward-API variables the injector defines first in the sidecar's
// environment: the sidecar labels its logs with the pod, and later values
// (the default allowed_hosts) refer to them as $(NAME).
const (
	PodNameEnv      = "POD_NAME"
	PodNamespaceEnv = "POD_NAMESPACE"
	PodIPEnv        = "POD_IP"
)

// Admin endpoints the injected probes and the postStart hook use.
const (
	// HealthPath answers 200 while the process serves (liveness, startup).
	HealthPath = "/healthz"
	// ReadyPath answers 200 once the sidecar can authenticate (readiness).
	ReadyPath = "/readyz"
	// DrainPath is the preStop hook of an injected pod (pkg/drain): it
	// moves client connections off the protected port, then answers.
	DrainPath = "/drain"
)

// DrainMaxSeconds is the longest drain the sidecar accepts and the
// injector writes.
const DrainMaxSeconds = 300

// DrainHookPath is the path of the preStop hook that drains for secs
// seconds.
func DrainHookPath(secs int64) string { return fmt.Sprintf("%s?seconds=%d", DrainPath, secs) }

// Subcommands of the sidecar binary that the injector writes into pod specs.
const (
	// CmdInitRedirect installs the port takeover rule (the init container).
	CmdInitRedirect = "init-redirect"
	// CmdWait blocks until a URL answers 2xx (the classic sidecar's
	// postStart hook, so the kubelet starts the app only once the proxy is
	// up).
	CmdWait = "wait"
)

// Flags of the subcommands (without dashes).
const (
	FlagRedirectPort   = "port"
	FlagRedirectTo     = "to"
	FlagRedirectRemove = "remove"
	FlagWaitURL        = "url"
	FlagWaitTimeout    = "timeout"
	FlagWaitInterval   = "interval"
)

// InitRedirectArgs is the argument list (after the binary) that redirects
// inbound TCP for port to the proxy's port to.
func InitRedirectArgs(port, to int) []string {
	return []string{CmdInitRedirect, "--" + FlagRedirectPort, strconv.Itoa(port), "--" + FlagRedirectTo, strconv.Itoa(to)}
}

// WaitArgs is the argument list (after the binary) that waits up to timeout
// for url to answer 2xx.
func WaitArgs(url string, timeout time.Duration) []string {
	return []string{CmdWait, "--" + FlagWaitURL, url, "--" + FlagWaitTimeout, timeout.String()}
}

// Arg renders the setting as the sidecar's command-line flag with value,
// e.g. "--admin-listen=:15090".
func (f Field) Arg(value string) string { return "--" + f.Flag + "=" + value }

// EnvName is the setting's primary environment variable (the derived
// MCP_OIDC_PROXY_<PATH>, which wins over the original project's aliases).
func (f Field) EnvName() string { return f.Env[0] }

// FieldOf returns the setting that sel points at, so that callers outside
// this package name a setting by its Go field and never spell its key, flag
// or variable:
//
//	config.FieldOf(func(c *config.Config) any { return &c.OIDC.ClientID })
//
// It panics when sel returns anything but a pointer to a setting of the
// Config it is given: that is a programming error, and a test covers every
// call.
func FieldOf(sel func(*Config) any) Field {
	var c Config
	p := reflect.ValueOf(sel(&c))
	if p.Kind() != reflect.Pointer {
		panic(fmt.Sprintf("config.FieldOf: selector returned %s, not a pointer to a setting", p.Kind()))
	}
	root := reflect.ValueOf(&c).Elem()
	for _, f := range Fields() {
		v := root.FieldByIndex(f.index)
		if v.Addr().Pointer() == p.Pointer() && v.Type() == p.Type().Elem() {
			return f
		}
	}
	panic(fmt.Sprintf("config.FieldOf: selector returned a %s that is not a setting of Config", p.Type()))
}

// PodSecretKey is one key of the pod's Secret (annotation
// mcp-oidc-proxy.io/secret) and the setting its value feeds.
type PodSecretKey struct {
	// Key is the key in the Secret, e.g. "client-secret".
	Key string
	// Setting is the secret setting; the injector passes the value in
	// Setting.EnvName() through an optional secretKeyRef.
	Setting Field
}

// PodSecretKeys lists, sorted by key, the Secret keys an injected sidecar
// reads: one for every setting marked secret (its podsecret tag), so a new
// secret setting is offered in the pod's Secret the moment it is tagged.
func PodSecretKeys() []PodSecretKey {
	var out []PodSecretKey
	walk(reflect.TypeOf(Config{}), nil, "", func(f Field) {
		if f.Secret {
			out = append(out, PodSecretKey{Key: f.podSecret, Setting: f})
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
