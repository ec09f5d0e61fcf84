// Package helm tests the Helm chart charts/mcp-oidc-proxy with the real helm
// command (built by hack/helm-bin.sh, $HELM) against a real kube-apiserver
// and etcd (controller-runtime envtest): the rendered manifests must lint,
// apply to the API server, agree with one another and with the tested
// kustomize manifests under config/, and run the injector.
package helm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/kube"
)

const chartDir = "../../charts/mcp-oidc-proxy"

// suite is the shared API server and the helm binary.
type suite struct {
	helm        string
	kubeVersion string
	// kubeconfig reaches the API server, for helm commands that need a
	// cluster (install --dry-run).
	kubeconfig string
	cfg        *rest.Config
	client     client.Client
	scheme     *runtime.Scheme
}

var env suite

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctrl.SetLogger(logr.Discard())
	helm := os.Getenv("HELM")
	if helm == "" {
		fmt.Fprintln(os.Stderr, `HELM is not set: export HELM="$(hack/helm-bin.sh)"`)
		return 1
	}
	cfg, stop, err := kube.StartAPIServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	c, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "API client: %v\n", err)
		return 1
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "discovery client: %v\n", err)
		return 1
	}
	v, err := dc.ServerVersion()
	if err != nil {
		fmt.Fprintf(os.Stderr, "server version: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "helm-kubeconfig-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Rendered for the API server they are applied to, as helm install
	// would (.Capabilities.KubeVersion and the chart's kubeVersion).
	env = suite{helm: helm, kubeVersion: v.GitVersion, kubeconfig: kubeconfig, cfg: cfg, client: c, scheme: clientgoscheme.Scheme}
	return m.Run()
}

// writeKubeconfig writes a kubeconfig for cfg (envtest's client
// certificate) to file, for the helm commands that talk to the API server.
func writeKubeconfig(cfg *rest.Config, file string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kc.CurrentContext = "envtest"
	if err := clientcmd.WriteToFile(*kc, file); err != nil {
		return fmt.Errorf("writing the envtest kubeconfig: %w", err)
	}
	return nil
}

// runHelm runs the helm command and returns its stdout; a failure carries
// stderr.
func runHelm(args ...string) ([]byte, error) {
	stdout, stderr, err := runHelmOutput(args...)
	if err != nil {
		return stdout, fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout, nil
}

// runHelmOutput runs the helm command and returns what it printed, apart
// from the command line (which may hold test values).
func runHelmOutput(args ...string) (stdout, stderr []byte, err error) {
	cmd := exec.Command(env.helm, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	// No user or CI helm configuration may change what is rendered.
	home, err := os.MkdirTemp("", "helm-home-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(home)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home,
		"KUBECONFIG="+env.kubeconfig, "HELM_KUBECONTEXT=envtest")
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

// template renders the chart as release in namespace with extra helm
// arguments (--set, --values).
func template(release, namespace string, extra ...string) (rendered, error) {
	args := append([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", env.kubeVersion}, extra...)
	out, err := runHelm(args...)
	if err != nil {
		return nil, err
	}
	return decode(out)
}

// installDryRun runs helm install --dry-run=server as release in namespace
// against the API server and returns its output (the manifests and the
// NOTES).
func installDryRun(release, namespace string, extra ...string) ([]byte, error) {
	args := append([]string{"install", release, chartDir, "--namespace", namespace, "--dry-run=server"}, extra...)
	return runHelm(args...)
}

// mustTemplate is template that fails the test.
func mustTemplate(t *testing.T, release, namespace string, extra ...string) rendered {
	t.Helper()
	objs, err := template(release, namespace, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decode(data []byte) (rendered, error) {
	var objs rendered
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := d.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding the rendered chart: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		objs = append(objs, u)
	}
}

// rendered is one helm template output.
type rendered []*unstructured.Unstructured

// find returns the only object of kind; it fails the test unless there is
// exactly one.
func (r rendered) find(t *testing.T, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, u := range r {
		if u.GetKind() == kind {
			found = append(found, u)
		}
	}
	if len(found) != 1 {
		t.Fatalf("rendered %d objects of kind %s, want 1", len(found), kind)
	}
	return found[0]
}

// count is how many objects of kind were rendered.
func (r rendered) count(kind string) int {
	n := 0
	for _, u := range r {
		if u.GetKind() == kind {
			n++
		}
	}
	return n
}

// into decodes the only object of kind into a typed object, refusing
// fields the type does not know.
func (r rendered) into(t *testing.T, kind string, obj any) {
	t.Helper()
	u := r.find(t, kind)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, obj, true); err != nil {
		t.Fatalf("%s %s: %v", kind, u.GetName(), err)
	}
}

// apply server-side applies every object (except skipped kinds) and removes
// them when the test ends. dryRun only validates them on the server.
func (r rendered) apply(t *testing.T, dryRun bool, skip func(*unstructured.Unstructured) bool) {
	t.Helper()
	ctx := context.Background()
	for _, u := range r {
		if skip != nil && skip(u) {
			continue
		}
		opts := []client.ApplyOption{client.FieldOwner("helm-test"), client.ForceOwnership}
		if dryRun {
			opts = append(opts, client.DryRunAll)
		}
		if err := env.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), opts...); err != nil {
			t.Fatalf("applying %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		if !dryRun {
			t.Cleanup(func() { _ = env.client.Delete(context.Background(), u.DeepCopy()) })
		}
	}
}
