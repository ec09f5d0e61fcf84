package helm

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
)

// notes is the NOTES part of helm install's output.
func notes(t *testing.T, out []byte) string {
	t.Helper()
	_, n, ok := strings.Cut(string(out), "\nNOTES:\n")
	if !ok {
		t.Fatalf("helm install printed no NOTES:\n%s", out)
	}
	return n
}

// TestNotes installs the chart (--dry-run, against the API server) and
// checks that the NOTES a user reads afterwards name this release's
// objects: the annotate command with the annotations the injector reads,
// where a refused pod's message is, the injector's logs by its pods' labels,
// and how to read the webhook's caBundle.
func TestNotes(t *testing.T) {
	for _, tc := range []struct {
		name, release, namespace string
		set                      []string
		want, notWant            []string
	}{
		{name: "defaults", release: "mcp-oidc-proxy", namespace: "mcp-system",
			want: []string{
				"kubectl -n mcp-system rollout status deployment/mcp-oidc-proxy\n",
				"kubectl get mutatingwebhookconfiguration mcp-oidc-proxy -o jsonpath='{.webhooks[0].clientConfig.caBundle}'",
				"published by the injector itself",
				"sidecar.defaults is empty, so every annotated pod needs its own ConfigMap",
			},
			notWant: []string{"existingSecret", "cert-manager"}},
		{name: "other names", release: "auth", namespace: "platform",
			set: []string{"sidecar.defaults.oidc.discovery_url=https://login.example.com",
				"sidecar.redis.existingSecret.name=redis", "sidecar.redis.existingSecret.passwordKey=redis-password", "failurePolicy=Ignore"},
			want: []string{
				"kubectl -n platform rollout status deployment/auth-mcp-oidc-proxy\n",
				"kubectl get mutatingwebhookconfiguration auth-mcp-oidc-proxy -o",
				"(failurePolicy Ignore)",
				"Redis credentials come from Secret redis in each pod's own namespace",
				"cluster defaults from sidecar.defaults apply",
			},
			notWant: []string{"sidecar.defaults is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			// (Not in cert-manager mode: helm install maps every kind on
			// the API server, which has no cert-manager CRDs.)
			out, err := installDryRun(tc.release, tc.namespace, args...)
			if err != nil {
				t.Fatal(err)
			}
			n := notes(t, out)
			for _, w := range tc.want {
				if !strings.Contains(n, w) {
					t.Errorf("NOTES lack %q:\n%s", w, n)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(n, w) {
					t.Errorf("NOTES mention %q:\n%s", w, n)
				}
			}

			// The commands name what the chart created.
			objs, err := decode([]byte(manifestOf(t, out)))
			if err != nil {
				t.Fatal(err)
			}
			var dep appsv1.Deployment
			objs.into(t, "Deployment", &dep)
			selector := regexp.MustCompile(`kubectl -n (\S+) logs -l (\S+) `).FindStringSubmatch(n)
			if selector == nil {
				t.Fatalf("NOTES have no injector logs command:\n%s", n)
			}
			if selector[1] != dep.Namespace {
				t.Errorf("logs in namespace %s, the injector runs in %s", selector[1], dep.Namespace)
			}
			for _, kv := range strings.Split(selector[2], ",") {
				k, v, _ := strings.Cut(kv, "=")
				if dep.Spec.Template.Labels[k] != v {
					t.Errorf("log selector %s does not match the injector's pod labels %v", kv, dep.Spec.Template.Labels)
				}
			}
			checkAnnotateCommand(t, n)
		})
	}
}

// manifestOf is the MANIFEST part of helm install --dry-run's output.
func manifestOf(t *testing.T, out []byte) string {
	t.Helper()
	_, rest, ok := strings.Cut(string(out), "\nMANIFEST:\n")
	if !ok {
		t.Fatalf("no MANIFEST in:\n%s", out)
	}
	m, _, _ := strings.Cut(rest, "\nNOTES:\n")
	return m
}

// checkAnnotateCommand runs the NOTES' kubectl patch command's JSON through
// bash, as a user pastes it, and checks that it sets the annotations the
// injector reads on the pod template (not on the Deployment).
func checkAnnotateCommand(t *testing.T, notes string) {
	t.Helper()
	var cmd string
	for _, line := range strings.Split(notes, "\n") {
		if strings.Contains(line, "kubectl") && strings.Contains(line, " patch deployment ") {
			cmd = strings.TrimSpace(line)
		}
	}
	if cmd == "" {
		t.Fatalf("NOTES have no kubectl patch deployment command:\n%s", notes)
	}
	// The patch is the argument after -p; let bash do the quoting.
	script := `APP_NAMESPACE=team-a DEPLOYMENT=mcp-server CONFIGMAP=mcp-proxy-config SECRET=mcp-proxy-secrets
kubectl() { while [ "$#" -gt 0 ]; do if [ "$1" = -p ]; then printf '%s' "$2"; return; fi; shift; done; exit 3; }
` + cmd
	out, err := exec.Command("bash", "-c", script).Output()
	if err != nil {
		t.Fatalf("running %q: %v", cmd, err)
	}
	var patch appsv1.Deployment
	if err := yaml.UnmarshalStrict(out, &patch); err != nil {
		t.Fatalf("patch %s: %v", out, err)
	}
	want := map[string]string{inject.AnnotationInject: "true", inject.AnnotationConfig: "mcp-proxy-config", inject.AnnotationSecret: "mcp-proxy-secrets"}
	got := patch.Spec.Template.Annotations
	if len(got) != len(want) {
		t.Errorf("the patch sets pod template annotations %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("the patch sets %s=%q on the pod template, want %q", k, got[k], v)
		}
	}
	for _, f := range []string{"-n \"$APP_NAMESPACE\"", "patch deployment \"$DEPLOYMENT\"", "--type merge"} {
		if !strings.Contains(cmd, f) {
			t.Errorf("the patch command lacks %s: %s", f, cmd)
		}
	}
}
