package helm

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/kube"
)

// chartMeta is what Chart.yaml says about versions.
type chartMeta struct {
	Version    string `json:"version"`
	AppVersion string `json:"appVersion"`
}

func readChart(t *testing.T) chartMeta {
	t.Helper()
	var c chartMeta
	if err := yaml.Unmarshal([]byte(mustRead(t, chartDir+"/Chart.yaml")), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// semver is a release version as helm and image tags use it (no leading v).
var semver = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

// TestReleaseVersionAgrees keeps one release version: the chart's
// appVersion is what make builds and tags (`make print-version`, the
// VERSION of `make build` and `make images`), the chart's default image
// tags and the kustomize manifests under config/.
func TestReleaseVersionAgrees(t *testing.T) {
	c := readChart(t)
	if !semver.MatchString(c.AppVersion) || !semver.MatchString(c.Version) {
		t.Fatalf("Chart.yaml version %q, appVersion %q: want release versions like 0.1.0", c.Version, c.AppVersion)
	}

	// make's default, not one a caller exported.
	cmd := exec.Command("make", "-s", "-C", "../..", "print-version")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VERSION=") && !strings.HasPrefix(kv, "MAKEFLAGS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make print-version: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != c.AppVersion {
		t.Errorf("make's default VERSION is %q, Chart.yaml appVersion %q", got, c.AppVersion)
	}

	wantInjector := "ghcr.io/mcp-oidc-proxy/mcp-oidc-injector:" + c.AppVersion
	wantSidecar := "ghcr.io/mcp-oidc-proxy/mcp-oidc-proxy:" + c.AppVersion
	objs := mustTemplate(t, "version", "version")
	var dep appsv1.Deployment
	objs.into(t, "Deployment", &dep)
	ctr := dep.Spec.Template.Spec.Containers[0]
	if ctr.Image != wantInjector {
		t.Errorf("chart: injector image %q, want %q", ctr.Image, wantInjector)
	}
	if o := kube.InjectorOptions(t, ctr.Args, "version"); o.SidecarImage != wantSidecar {
		t.Errorf("chart: --sidecar-image %q, want %q", o.SidecarImage, wantSidecar)
	}
	if v := dep.Labels["app.kubernetes.io/version"]; v != c.AppVersion {
		t.Errorf("chart: app.kubernetes.io/version %q, want %q", v, c.AppVersion)
	}

	kdep := kustomizeDeployment(t)
	kctr := kdep.Spec.Template.Spec.Containers[0]
	if kctr.Image != wantInjector {
		t.Errorf("config/: injector image %q, want %q", kctr.Image, wantInjector)
	}
	if o := kube.InjectorOptions(t, kctr.Args, "version"); o.SidecarImage != wantSidecar {
		t.Errorf("config/: --sidecar-image %q, want %q", o.SidecarImage, wantSidecar)
	}
}
