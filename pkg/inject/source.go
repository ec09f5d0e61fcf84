package inject

import (
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

// errNoSuchFile answers every file the sidecar would read: without a
// ConfigMap the injected sidecar has no volume mounted, so a *_file setting
// in the cluster defaults can never be read (and the injector never reads
// its own file system on a pod's behalf).
var errNoSuchFile = errors.New("no such file: an injected sidecar mounts only the pod's ConfigMap (" + config.PodConfigDir + "); give secrets in the pod's Secret instead")

// checkConfigSource refuses a pod whose sidecar would have nothing to start
// from; validate calls it for pods without AnnotationConfig. The sidecar's
// configuration comes from the pod's ConfigMap, the cluster-wide defaults
// (Settings.ProxyDefaults), what the injector writes into its container, and
// the pod's Secret. A pod with a ConfigMap is admitted: its content is the
// pod's business and may not exist yet. Without one, everything but the
// secrets is known here, so the check loads exactly that with the sidecar's
// own loader and refuses the pod when the sidecar would refuse to start,
// instead of letting it crash-loop. Problems with secret settings are left
// out when the pod names a Secret, which can supply them at run time.
func (in *Injector) checkConfigSource(d *denials, p plan) {
	problems, secretsNeeded := in.sidecarProblems(p)
	if len(problems) == 0 {
		return
	}
	fix := fmt.Sprintf("set %s to the name of a ConfigMap in the pod's namespace whose %s key holds the sidecar's configuration, "+
		"or give every pod these settings in the chart's sidecar.defaults (the injector's --proxy-defaults-file)", AnnotationConfig, config.ConfigFileKey)
	if len(secretsNeeded) > 0 {
		fix += fmt.Sprintf("; secrets come from the Secret named by %s (%s)", AnnotationSecret, strings.Join(secretsNeeded, ", "))
	}
	if in.noDefaults {
		var paths []string
		for _, pr := range problems {
			var fe *config.FieldError
			if errors.As(pr, &fe) {
				paths = append(paths, fe.Path)
			} else {
				paths = append(paths, pr.Error())
			}
		}
		d.add(AnnotationConfig, "is not set and the injector has no cluster-wide sidecar defaults, so the sidecar has no configuration source and would not start (it needs "+
			strings.Join(paths, ", ")+")", fix)
		return
	}
	msgs := make([]string, len(problems))
	for i, pr := range problems {
		msgs[i] = pr.Error()
	}
	d.add(AnnotationConfig, "is not set, and the cluster-wide sidecar defaults alone do not give the sidecar a valid configuration: "+strings.Join(msgs, "; "), fix)
}

// sidecarProblems loads what the sidecar would see without a ConfigMap and
// returns the problems the pod's Secret cannot fix, and, when the pod names
// no Secret, the Secret keys that would fix the others. The load depends on
// the cluster defaults and the pod's command line and log level only, so
// the Injector remembers its outcome for each of those.
func (in *Injector) sidecarProblems(p plan) (problems []error, secretsNeeded []string) {
	args := in.f.proxyArgs(p)
	loaded := in.sources.problems(args, p.logLevel, func() []error {
		// The pod IP is not known at admission; the kubelet gives the
		// sidecar one (downward API), so stand in a documentation address.
		env := []string{config.ClusterDefaultsEnv + "=" + in.s.ProxyDefaults, config.PodIPEnv + "=192.0.2.1"}
		if p.logLevel != "" {
			env = append(env, in.f.logLevel.EnvName()+"="+p.logLevel)
		}
		_, err := config.LoadValidated(config.Source{
			Args:     args,
			Env:      env,
			ReadFile: func(string) ([]byte, error) { return nil, errNoSuchFile },
		})
		return flattenErrors(err)
	})
	for _, e := range loaded {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			problems = append(problems, e)
			continue
		}
		if key, secret := in.f.secretKey[fe.Path]; secret {
			if p.secret != "" {
				continue
			}
			secretsNeeded = append(secretsNeeded, fmt.Sprintf("key %s for %s", key, fe.Path))
		}
		problems = append(problems, e)
	}
	return problems, secretsNeeded
}

// emptyDefaults is true when the operator gave no cluster-wide defaults (or
// only an empty document).
func emptyDefaults(defaults string) bool {
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(defaults), &doc); err != nil {
		return false
	}
	return len(doc) == 0
}

// flattenErrors lists the leaves of a tree of joined errors.
func flattenErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}
