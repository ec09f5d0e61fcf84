package helm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/kube"
)

const kustomizeDefault = "../../config/default"

// kubectlBin is the kubectl that builds the kustomizations the way users
// do: $KUBECTL, or bin/kubectl (hack/kube-bins.sh, which `make test` runs).
func kubectlBin(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("KUBECTL"); k != "" {
		return k
	}
	const built = "../../bin/kubectl"
	if _, err := os.Stat(built); err != nil {
		t.Fatalf("no kubectl: set KUBECTL or build bin/kubectl with hack/kube-bins.sh (%v)", err)
	}
	return built
}

// kustomizeBuild is `kubectl kustomize dir` for the kustomizations under
// config/, which only list resources: it reads them in order, following
// directories, and fails on any other kustomization field (a patch, a name
// prefix, generators), which would need the real kustomize; the real
// `kubectl kustomize` must build the same objects.
func kustomizeBuild(t *testing.T, dir string) rendered {
	t.Helper()
	objs, err := readKustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	kubectl := kubectlBin(t)
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("%s kustomize %s: %v", kubectl, dir, err)
	}
	built, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := objectKeys(built), objectKeys(objs); !reflect.DeepEqual(got, want) {
		t.Fatalf("kubectl kustomize %s builds %v, the resources list %v", dir, got, want)
	}
	for _, b := range built {
		for _, o := range objs {
			if objectKey(o) == objectKey(b) && !reflect.DeepEqual(o.Object, b.Object) {
				t.Errorf("kubectl kustomize changes %s:\n%s", objectKey(b), lineDiff(toYAML(t, o), toYAML(t, b)))
			}
		}
	}
	return built
}

// kustomization is the part of kustomization.yaml that config/ uses.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

func readKustomization(dir string) (rendered, error) {
	file := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s uses more than resources (build it with kubectl kustomize; set KUBECTL): %w", file, err)
	}
	var objs rendered
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", file, r, err)
		}
		var more rendered
		if fi.IsDir() {
			more, err = readKustomization(path)
		} else {
			var doc []byte
			if doc, err = os.ReadFile(path); err == nil {
				more, err = decode(doc)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		objs = append(objs, more...)
	}
	return objs, nil
}

func objectKey(u *unstructured.Unstructured) string {
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

func objectKeys(r rendered) []string {
	var keys []string
	for _, u := range r {
		keys = append(keys, objectKey(u))
	}
	sort.Strings(keys)
	return keys
}

// kustomizeDeployment is config/default's injector Deployment.
func kustomizeDeployment(t *testing.T) appsv1.Deployment {
	t.Helper()
	var dep appsv1.Deployment
	kustomizeBuild(t, kustomizeDefault).into(t, "Deployment", &dep)
	return dep
}

// helmOnlyLabels are the labels the chart adds for Helm (release, chart,
// version); config/ has no release to name.
var helmOnlyLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/part-of", "app.kubernetes.io/version",
	"app.kubernetes.io/managed-by", "helm.sh/chart"}

// TestKustomizeInstallsWhatTheChartDoes checks that `kubectl apply -k
// config/default` installs the objects the chart installs with its
// defaults, as the API server stores them (defaults filled in): the same
// kinds and names, the same specs, the same injector options. What may
// differ is only Helm's bookkeeping (its labels, the defaults checksum) and
// that config/ creates its namespace, labelled for the restricted Pod
// Security level.
func TestKustomizeInstallsWhatTheChartDoes(t *testing.T) {
	kobjs := kustomizeBuild(t, kustomizeDefault)
	var ns corev1.Namespace
	kobjs.into(t, "Namespace", &ns)
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("config/ namespace %s labels %v: want Pod Security restricted enforced", ns.Name, ns.Labels)
	}
	hobjs := mustTemplate(t, "mcp-oidc-proxy", ns.Name, "--set", "fullnameOverride="+ns.Name)

	var kubeObjs, helmObjs rendered
	for _, u := range kobjs {
		if u.GetKind() != "Namespace" {
			kubeObjs = append(kubeObjs, u)
		}
	}
	helmObjs = hobjs
	if got, want := objectKeys(kubeObjs), objectKeys(helmObjs); !reflect.DeepEqual(got, want) {
		t.Fatalf("config/default has %v,\nthe chart %v", got, want)
	}

	// As stored: each object through a server-side dry-run apply.
	newNamespace(t, ns.Name)
	stored := func(u *unstructured.Unstructured) *unstructured.Unstructured {
		t.Helper()
		u = u.DeepCopy()
		err := env.client.Patch(context.Background(), u, client.Apply, client.FieldOwner("helm-test"), client.ForceOwnership, client.DryRunAll) //nolint:staticcheck // Apply of an unstructured object
		if err != nil {
			t.Fatalf("applying %s: %v", objectKey(u), err)
		}
		return u
	}
	for _, k := range kubeObjs {
		var h *unstructured.Unstructured
		for _, c := range helmObjs {
			if objectKey(c) == objectKey(k) {
				h = c
			}
		}
		ks, hs := stored(k), stored(h)
		if k.GetKind() == "Deployment" {
			// Argument lists differ in spelling (the chart passes every
			// value); they must mean the same.
			ko := kube.InjectorOptions(t, argsOf(t, ks), ns.Name)
			ho := kube.InjectorOptions(t, argsOf(t, hs), ns.Name)
			if !reflect.DeepEqual(ko, ho) {
				t.Errorf("injector options differ:\nconfig/: %+v\nchart:   %+v", ko, ho)
			}
			kc, hc := containerOf(t, ks), containerOf(t, hs)
			kc.Args, hc.Args = nil, nil
			unstructured.RemoveNestedField(ks.Object, "spec", "template", "spec", "containers")
			unstructured.RemoveNestedField(hs.Object, "spec", "template", "spec", "containers")
			if !reflect.DeepEqual(kc, hc) {
				t.Errorf("injector container differs:\n%s", lineDiff(toYAML(t, kc), toYAML(t, hc)))
			}
		}
		kn, hn := normalize(ks.Object), normalize(hs.Object)
		if !reflect.DeepEqual(kn, hn) {
			t.Errorf("%s differs (- config/default, + chart):\n%s", objectKey(k), lineDiff(toYAML(t, kn), toYAML(t, hn)))
		}
	}
}

func argsOf(t *testing.T, u *unstructured.Unstructured) []string {
	t.Helper()
	return containerOf(t, u).Args
}

// containerOf is the injector container.
func containerOf(t *testing.T, u *unstructured.Unstructured) corev1.Container {
	t.Helper()
	var dep appsv1.Deployment
	rendered{u}.into(t, "Deployment", &dep)
	return dep.Spec.Template.Spec.Containers[0]
}

// normalize drops what the server and Helm add: server metadata, Helm's
// labels wherever labels are matched, and the checksum annotation.
func normalize(obj map[string]any) map[string]any {
	obj = stripLabels(obj).(map[string]any)
	for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"} {
		unstructured.RemoveNestedField(obj, "metadata", f)
	}
	unstructured.RemoveNestedField(obj, "metadata", "annotations")
	unstructured.RemoveNestedField(obj, "spec", "template", "metadata", "annotations")
	return obj
}

// stripLabels removes helmOnlyLabels from every map in v.
func stripLabels(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, c := range v {
			if !slices.Contains(helmOnlyLabels, k) {
				out[k] = stripLabels(c)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, c := range v {
			out[i] = stripLabels(c)
		}
		return out
	}
	return v
}

func toYAML(t *testing.T, v any) string {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// lineDiff lists the lines only a has (-) and only b has (+).
func lineDiff(a, b string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	var out bytes.Buffer
	for _, l := range strings.Split(a, "\n") {
		if cb[l] == 0 {
			fmt.Fprintf(&out, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if ca[l] == 0 {
			fmt.Fprintf(&out, "+ %s\n", l)
		}
	}
	if out.Len() == 0 {
		return "(same lines, in another order)\n" + a + "---\n" + b
	}
	return out.String()
}

const configREADME = "../../config/README.md"

// TestConfigREADMEHasTheNotes keeps config/README.md, the kustomize
// counterpart of NOTES.txt, in step with the chart's NOTES: each command the
// NOTES give for an install like config/default's is in the README, with
// the log selector config/'s pods carry (no Helm instance label).
func TestConfigREADMEHasTheNotes(t *testing.T) {
	dep := kustomizeDeployment(t)
	out, err := installDryRun("mcp-oidc-proxy", dep.Namespace, "--set", "fullnameOverride="+dep.Name)
	if err != nil {
		t.Fatal(err)
	}
	readme := mustRead(t, configREADME)
	lines := map[string]bool{}
	for _, l := range strings.Split(readme, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	n := 0
	for _, l := range strings.Split(notes(t, out), "\n") {
		if !strings.HasPrefix(l, "  kubectl ") {
			continue
		}
		n++
		cmd := strings.TrimSpace(strings.ReplaceAll(l, "app.kubernetes.io/instance=mcp-oidc-proxy,", ""))
		if !lines[cmd] {
			t.Errorf("%s lacks the NOTES command\n%s", configREADME, cmd)
		}
	}
	if n < 5 {
		t.Errorf("only %d kubectl commands in the NOTES", n)
	}
	if !strings.Contains(readme, "kubectl -n "+dep.Namespace+" rollout status deployment/"+dep.Name) {
		t.Errorf("%s does not wait for config/'s Deployment %s/%s", configREADME, dep.Namespace, dep.Name)
	}
	sel := "app.kubernetes.io/name=" + dep.Spec.Template.Labels["app.kubernetes.io/name"]
	if !strings.Contains(readme, "logs -l "+sel+" ") {
		t.Errorf("%s does not select the injector's logs by its pod label %s", configREADME, sel)
	}
}

// overlay is the kustomization of config/README.md's overlay example.
type overlay struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
	Patches []struct {
		Target struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"target"`
		Patch string `json:"patch"`
	} `json:"patches"`
}

// TestConfigREADMEOverlay checks the README's overlay example against
// config/default: it names the injector image and Deployment that are
// there, and its patch, applied to the Deployment, gives the injector the
// options the README says (a later flag wins). With a kubectl at hand the
// overlay is also built by kustomize itself.
func TestConfigREADMEOverlay(t *testing.T) {
	readme := mustRead(t, configREADME)
	_, rest, ok := strings.Cut(readme, "```yaml\n# kustomization.yaml of your overlay\n")
	if !ok {
		t.Fatalf("%s has no overlay example", configREADME)
	}
	doc, _, _ := strings.Cut(rest, "```")
	var o overlay
	if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
		t.Fatalf("the overlay example: %v\n%s", err, doc)
	}
	dep := kustomizeDeployment(t)
	c := dep.Spec.Template.Spec.Containers[0]
	repo, _, _ := strings.Cut(c.Image, ":")
	if len(o.Images) != 1 || o.Images[0].Name != repo {
		t.Errorf("overlay images %+v, want one for config/'s %s", o.Images, repo)
	}
	if len(o.Patches) != 1 || o.Patches[0].Target.Kind != "Deployment" || o.Patches[0].Target.Name != dep.Name {
		t.Fatalf("overlay patches %+v, want one for Deployment %s", o.Patches, dep.Name)
	}
	var ops []struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value string `json:"value"`
	}
	if err := yaml.UnmarshalStrict([]byte(o.Patches[0].Patch), &ops); err != nil {
		t.Fatal(err)
	}
	args := append([]string{}, c.Args...)
	for _, op := range ops {
		if op.Op != "add" || op.Path != "/spec/template/spec/containers/0/args/-" {
			t.Fatalf("overlay patch op %+v: this test only knows appending to the injector's args", op)
		}
		args = append(args, op.Value)
	}
	opts := kube.InjectorOptions(t, args, dep.Namespace)
	if opts.SidecarImage != "registry.example.com/mcp-oidc-proxy:"+o.Images[0].NewTag || opts.RedisSecret.Name != "redis" ||
		opts.RedisSecret.PasswordKey != "redis-password" {
		t.Errorf("the overlay gives the injector %+v", opts)
	}

	kubectl := kubectlBin(t)
	abs, err := filepath.Abs(kustomizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "overlay")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, filepath.Join(filepath.Dir(dir), "config-default")); err != nil {
		t.Fatal(err)
	}
	k := strings.Replace(doc, "../config/default", "../config-default", 1)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize the overlay: %v\n%s", err, out)
	}
	built, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	var bdep appsv1.Deployment
	built.into(t, "Deployment", &bdep)
	bc := bdep.Spec.Template.Spec.Containers[0]
	if want := o.Images[0].NewName + ":" + o.Images[0].NewTag; bc.Image != want {
		t.Errorf("kustomize: injector image %q, want %q", bc.Image, want)
	}
	if got := kube.InjectorOptions(t, bc.Args, dep.Namespace); !reflect.DeepEqual(got, opts) {
		t.Errorf("kustomize gives the injector %+v, the test %+v", got, opts)
	}
}
