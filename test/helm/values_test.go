package helm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// valuesArgs turns --set assignments and a values document into helm
// arguments.
func valuesArgs(t *testing.T, set []string, values string) []string {
	t.Helper()
	var args []string
	for _, s := range set {
		args = append(args, "--set", s)
	}
	if values != "" {
		file := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(file, []byte(values), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--values", file)
	}
	return args
}

// lint runs helm lint --strict and returns everything it printed.
func lint(args ...string) (string, error) {
	return helmSays(append([]string{"lint", "--strict", "--kube-version", env.kubeVersion, chartDir}, args...)...)
}

// helmSays runs helm and returns everything it printed.
func helmSays(args ...string) (string, error) {
	stdout, stderr, err := runHelmOutput(args...)
	return string(stdout) + string(stderr), err
}

// installOrTemplate runs helm install --dry-run against the API server, or
// helm template where the render holds kinds whose CRDs (cert-manager,
// Prometheus Operator) the API server does not have.
func installOrTemplate(needsCRDs bool, args ...string) (string, error) {
	if needsCRDs {
		return helmSays(append([]string{"template", "v", chartDir, "--namespace", "values", "--kube-version", env.kubeVersion}, args...)...)
	}
	return helmSays(append([]string{"install", "v", chartDir, "--namespace", "values", "--dry-run=server"}, args...)...)
}

// TestValuesSchemaRefusesBadValues runs bad values through helm lint and
// helm install --dry-run against the API server: each must be refused with
// a message naming the value, before anything reaches the cluster.
func TestValuesSchemaRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		set    []string
		values string
		// want are substrings of the refusal; the first names the value.
		want []string
		// templateOnly: refused by a template check (the secret rule), which
		// helm lint reports but does not fail on (lint mode turns a
		// template's fail into [INFO]); the schema refuses everything else.
		templateOnly bool
	}{
		{name: "replicas 0", set: []string{"injector.replicas=0"}, want: []string{"/injector/replicas", "minimum"}},
		{name: "replicas negative", set: []string{"injector.replicas=-1"}, want: []string{"/injector/replicas"}},
		{name: "replicas a string", set: []string{"injector.replicas=two"}, want: []string{"/injector/replicas", "want integer"}},
		{name: "replicas a fraction", values: "injector:\n  replicas: 1.5\n", want: []string{"/injector/replicas"}},
		{name: "default mode", set: []string{"sidecar.defaultMode=bounce"}, want: []string{"/sidecar/defaultMode", "'redirect', 'rebind'"}},
		{name: "native sidecars", set: []string{"sidecar.nativeSidecars=maybe"}, want: []string{"/sidecar/nativeSidecars", "'auto'"}},
		{name: "rebind when restricted", set: []string{"sidecar.rebindWhenRestricted=yes"}, want: []string{"/sidecar/rebindWhenRestricted", "want boolean"}},
		{name: "certificates mode", set: []string{"certificates.mode=vault"}, want: []string{"/certificates/mode", "'self-managed', 'cert-manager'"}},
		{name: "issuer kind", set: []string{"certificates.certManager.issuerRef.kind=Vault"}, want: []string{"/certificates/certManager/issuerRef/kind"}},
		{name: "certificate duration", set: []string{"certificates.certManager.duration=90 days"}, want: []string{"/certificates/certManager/duration"}},
		{name: "failure policy", set: []string{"failurePolicy=Retry"}, want: []string{"/failurePolicy", "'Fail', 'Ignore'"}},
		{name: "timeout above the API server's 30s", set: []string{"timeoutSeconds=31"}, want: []string{"/timeoutSeconds", "maximum"}},
		{name: "timeout 0", set: []string{"timeoutSeconds=0"}, want: []string{"/timeoutSeconds", "minimum"}},
		{name: "injector pull policy", set: []string{"injector.image.pullPolicy=always"}, want: []string{"/injector/image/pullPolicy", "'Always', 'IfNotPresent', 'Never'"}},
		{name: "sidecar pull policy", set: []string{"sidecar.image.pullPolicy=Sometimes"}, want: []string{"/sidecar/image/pullPolicy"}},
		{name: "repository with a tag", set: []string{"injector.image.repository=ghcr.io/x/injector:v1"}, want: []string{"/injector/image/repository", "does not match pattern"}},
		{name: "repository upper case", set: []string{"sidecar.image.repository=ghcr.io/X/Proxy"}, want: []string{"/sidecar/image/repository"}},
		{name: "repository empty", set: []string{"sidecar.image.repository="}, want: []string{"/sidecar/image/repository"}},
		{name: "tag with a space", set: []string{"injector.image.tag=v1 beta"}, want: []string{"/injector/image/tag", "does not match pattern"}},
		{name: "tag a number", set: []string{"sidecar.image.tag=1"}, want: []string{"/sidecar/image/tag", "want string"}},
		{name: "tag with a digest", set: []string{"sidecar.image.tag=sha256:abc"}, want: []string{"/sidecar/image/tag"}},
		{name: "log level", set: []string{"injector.logLevel=verbose"}, want: []string{"/injector/logLevel"}},
		{name: "extra arg without dashes", set: []string{"injector.extraArgs[0]=log-level=debug"}, want: []string{"/injector/extraArgs/0"}},
		{name: "injector resources shape", values: "injector:\n  resources:\n    cpu: 100m\n", want: []string{"/injector/resources", "'cpu' not allowed"}},
		{name: "injector resources quantity", set: []string{"injector.resources.limits.memory=lots"}, want: []string{"/injector/resources/limits/memory"}},
		{name: "sidecar resources quantity", set: []string{"sidecar.resources.requests.cpu=fast"}, want: []string{"/sidecar/resources/requests/cpu"}},
		{name: "sidecar resources not cpu or memory", set: []string{"sidecar.resources.limits.nvidia\\.com/gpu=1"}, want: []string{"/sidecar/resources/limits", "'nvidia.com/gpu' not allowed"}},
		{name: "typo at the top", set: []string{"failurepolicy=Ignore"}, want: []string{"additional properties 'failurepolicy' not allowed"}},
		{name: "typo in injector", set: []string{"injector.replica=3"}, want: []string{"/injector", "'replica' not allowed"}},
		{name: "typo in sidecar", values: "sidecar:\n  defaultmode: rebind\n", want: []string{"/sidecar", "'defaultmode' not allowed"}},
		{name: "typo in certificates", set: []string{"certificates.certmanager.duration=1h"}, want: []string{"/certificates", "'certmanager' not allowed"}},
		{name: "pdb minAvailable", set: []string{"podDisruptionBudget.minAvailable=half"}, want: []string{"/podDisruptionBudget/minAvailable"}},
		{name: "service account name", set: []string{"serviceAccount.name=My_SA"}, want: []string{"/serviceAccount/name"}},
		{name: "fullname override", set: []string{"fullnameOverride=Injector"}, want: []string{"/fullnameOverride"}},
		{name: "node selector value", values: "injector:\n  nodeSelector:\n    gpu: true\n", want: []string{"/injector/nodeSelector/gpu", "want string"}},
		{name: "defaults not a mapping", set: []string{"sidecar.defaults=oidc"}, want: []string{"/sidecar/defaults"}},
		{name: "service monitor interval", set: []string{"serviceMonitor.interval=30 seconds"}, want: []string{"/serviceMonitor/interval"}},
		{name: "redis secret name", set: []string{"sidecar.redis.existingSecret.name=Redis_Creds"}, want: []string{"/sidecar/redis/existingSecret/name"}},
		{name: "redis secret key", set: []string{"sidecar.redis.existingSecret.name=redis", "sidecar.redis.existingSecret.passwordKey=pass word"}, want: []string{"/sidecar/redis/existingSecret/passwordKey"}},
		{name: "redis secret without keys", set: []string{"sidecar.redis.existingSecret.name=redis"}, want: []string{"/sidecar/redis/existingSecret"}},
		{name: "redis keys without a secret", set: []string{"sidecar.redis.existingSecret.passwordKey=password"}, want: []string{"/sidecar/redis/existingSecret"}},
		// A password in values would be copied into every pod spec.
		{name: "redis password in values", set: []string{"sidecar.redis.password=s3cret"}, want: []string{"/sidecar/redis", "'password' not allowed"}},
		{name: "client secret in defaults", set: []string{"sidecar.defaults.oidc.client_secret=s3cret"},
			want: []string{"oidc.client_secret", "sidecar.defaults holds secrets", "mcp-oidc-proxy.io/secret"}, templateOnly: true},
		{name: "redis url with a password in defaults", values: "sidecar:\n  defaults:\n    redis:\n      url: redis://:s3cret@redis:6379/0\n",
			want: []string{"redis.url (a URL with a password)", "sidecar.defaults holds secrets"}, templateOnly: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := valuesArgs(t, tc.set, tc.values)
			check := func(what, msg string, err error) {
				t.Helper()
				if err == nil {
					t.Errorf("%s accepts the values", what)
					return
				}
				for _, w := range tc.want {
					if !strings.Contains(msg, w) {
						t.Errorf("%s's refusal lacks %q:\n%s", what, w, msg)
					}
				}
				if strings.Contains(msg, "s3cret") {
					t.Errorf("%s prints the secret:\n%s", what, msg)
				}
			}
			out, err := lint(args...)
			if tc.templateOnly {
				// Reported, though lint passes.
				if !strings.Contains(out, tc.want[0]) {
					t.Errorf("helm lint does not report %q:\n%s", tc.want[0], out)
				}
			} else {
				check("helm lint", out, err)
			}
			out, err = installOrTemplate(false, args...)
			check("helm install --dry-run", out, err)
		})
	}
}

// TestValuesSchemaAcceptsGoodValues keeps the schema from refusing what the
// chart supports: every documented value, in each form helm users write it.
func TestValuesSchemaAcceptsGoodValues(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set       []string
		values    string
		needsCRDs bool
	}{
		{name: "defaults"},
		{name: "chart's own values file", values: mustRead(t, chartDir+"/values.yaml")},
		{name: "images", set: []string{"injector.image.repository=registry.example.com:5000/team/mcp-oidc-injector",
			"injector.image.tag=v0.1.0-rc.1", "sidecar.image.repository=localhost/proxy", "sidecar.image.tag=0.1.0",
			"injector.image.pullPolicy=Always", "sidecar.image.pullPolicy=Never", "injector.imagePullSecrets[0].name=regcred"}},
		{name: "native sidecars as --set bool", set: []string{"sidecar.nativeSidecars=true"}},
		{name: "native sidecars as a string", values: "sidecar:\n  nativeSidecars: \"false\"\n"},
		{name: "modes", set: []string{"sidecar.defaultMode=rebind", "sidecar.rebindWhenRestricted=true", "failurePolicy=Ignore", "timeoutSeconds=30"}},
		{name: "resources", set: []string{"sidecar.resources.requests.cpu=", "sidecar.resources.limits.cpu=1", "sidecar.resources.limits.memory=1.5Gi",
			"injector.resources.requests.cpu=0.1", "injector.resources.limits.ephemeral-storage=1Gi"}},
		{name: "one replica without a PDB", set: []string{"injector.replicas=1", "podDisruptionBudget.enabled=false"}},
		{name: "pdb percent", set: []string{"podDisruptionBudget.minAvailable=50%"}},
		{name: "cert-manager with an issuer", set: []string{"certificates.mode=cert-manager", "certificates.certManager.issuerRef.name=corp",
			"certificates.certManager.issuerRef.kind=ClusterIssuer", "certificates.certManager.duration=720h30m"}, needsCRDs: true},
		{name: "scheduling", values: "injector:\n  nodeSelector: {kubernetes.io/os: linux}\n  tolerations: [{key: dedicated, operator: Exists}]\n" +
			"  affinity: {nodeAffinity: {}}\n  priorityClassName: system-cluster-critical\n  podLabels: {team: platform}\n  podAnnotations: {a: b}\n" +
			"  extraArgs: [--cert-resync=30s]\n  logLevel: debug\n"},
		{name: "sidecar defaults", values: "sidecar:\n  defaults:\n    oidc:\n      discovery_url: https://login.example.com\n    session:\n      store: redis\n"},
		{name: "redis existing secret", set: []string{"sidecar.redis.existingSecret.name=redis", "sidecar.redis.existingSecret.passwordKey=redis-password"}},
		{name: "redis existing secret with a URL", set: []string{"sidecar.redis.existingSecret.name=redis-creds", "sidecar.redis.existingSecret.urlKey=url",
			"sidecar.redis.existingSecret.passwordKey="}},
		{name: "service account and monitor", set: []string{"serviceAccount.name=mcp-injector", "serviceAccount.annotations.a=b",
			"serviceMonitor.enabled=true", "serviceMonitor.interval=1m30s", "serviceMonitor.labels.release=prom"}, needsCRDs: true},
		{name: "names", set: []string{"nameOverride=mcp", "fullnameOverride=mcp-oidc-injector"}},
		{name: "a parent chart's globals", set: []string{"global.imageRegistry=example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := valuesArgs(t, tc.set, tc.values)
			if out, err := lint(args...); err != nil {
				t.Errorf("helm lint: %s", out)
			}
			if out, err := installOrTemplate(tc.needsCRDs, args...); err != nil {
				t.Errorf("helm install --dry-run or template: %v\n%s", err, out)
			}
		})
	}
}

func mustRead(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
