package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
)

// nodeIP is the node's address on the bridge mcpbr0: host services the
// pods use (Redis, the OpenID provider) listen there.
const nodeIP = "198.18.0.1"

// release is the Helm release the README installs.
const release = "mcp-oidc-proxy"

// Bounds of the suite. The machine is small and shared, so they are
// generous; each wait polls its condition and fails at its bound.
const (
	// readmeStepTimeout bounds one README block (its own waits, such as
	// kubectl rollout status --timeout=5m, are shorter or equal).
	readmeStepTimeout = 6 * time.Minute
	// podsTimeout bounds pods becoming Ready or finishing.
	podsTimeout = 4 * time.Minute
	// apiTimeout bounds a single API or HTTP request.
	apiTimeout = 30 * time.Second
	// serviceTimeout bounds kube-proxy programming a new Service or
	// endpoint.
	serviceTimeout = time.Minute
	// pollInterval is how often waits look again.
	pollInterval = 500 * time.Millisecond
)

// step is one numbered step of the suite.
type step struct {
	name     string
	requires []string
	run      func(t *testing.T)
}

// suite is the state the steps share: the cluster client, the host
// services, the README runner, and what earlier steps produced.
type suite struct {
	env    *environment
	kube   kubernetes.Interface
	redis  *redisserver.Server
	idp    *oidcprovider.Provider
	readme *readmeRunner
	// runID makes this run's namespaces unique on a kept cluster.
	runID string
	// injectorNS and appNS are the README's INJECTOR_NAMESPACE and
	// NAMESPACE for this run.
	injectorNS, appNS string
	// externalURL is the README's EXTERNAL_URL: the ingress in front of
	// the Service. clusterURL names the Service by its cluster DNS name.
	externalURL, clusterURL string
	ingress                 *ingress
	// namespaces the run created, deleted at the end.
	namespaces []string

	// Set by step 2 and 3.
	app    appDeployment
	cookie *http.Cookie
	mcp    *mcpclient.Client
}

func TestCluster(t *testing.T) {
	suiteStart := time.Now()
	s := newSuite(t)
	steps := []step{
		{name: "1-helm-install", run: s.stepInstall},
		{name: "2-annotated-deployment", requires: []string{"1-helm-install"}, run: s.stepDeploy},
		{name: "3-browser-login", requires: []string{"2-annotated-deployment"}, run: s.stepBrowserLogin},
		{name: "4-mcp-client-oauth", requires: []string{"2-annotated-deployment"}, run: s.stepMCPClient},
		{name: "5-configmap-reload", requires: []string{"3-browser-login"}, run: s.stepReload},
		{name: "6-rollout-restart", requires: []string{"3-browser-login"}, run: s.stepRollout},
		{name: "7-port-takeover", requires: []string{"3-browser-login"}, run: s.stepPortTakeover},
		// 8 and 9 copy step 2's ConfigMap and Secret.
		{name: "8-job-completes", requires: []string{"2-annotated-deployment"}, run: s.stepJob},
		{name: "9-injector-down", requires: []string{"2-annotated-deployment"}, run: s.stepInjectorDown},
		// 10 runs before 11, which removes the install's cluster defaults
		// that new pods of the README's ConfigMap need (the issuer).
		{name: "10-mcp-sessions", requires: []string{"4-mcp-client-oauth"}, run: s.stepSessions},
		{name: "11-no-config-refused", requires: []string{"1-helm-install"}, run: s.stepNoConfig},
	}
	passed := map[string]bool{}
	type timing struct {
		name    string
		outcome string
		took    time.Duration
	}
	var timings []timing
	for _, st := range steps {
		var missing []string
		for _, r := range st.requires {
			if !passed[r] {
				missing = append(missing, r)
			}
		}
		if len(missing) > 0 {
			t.Errorf("step %s not run: it needs %s, which failed", st.name, strings.Join(missing, ", "))
			timings = append(timings, timing{st.name, "not run", 0})
			continue
		}
		start := time.Now()
		ok := t.Run(st.name, st.run)
		passed[st.name] = ok
		timings = append(timings, timing{st.name, map[bool]string{true: "ok", false: "FAILED"}[ok], time.Since(start)})
	}
	if passed["2-annotated-deployment"] {
		if notRun := s.readme.notRun(); len(notRun) > 0 {
			t.Errorf("the suite did not run the README steps %v: every command of \"On Kubernetes\" must be tested", notRun)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "test/cluster: elapsed time per step\n")
	for _, tm := range timings {
		fmt.Fprintf(&b, "  %-26s %-8s %s\n", tm.name, tm.outcome, tm.took.Round(100*time.Millisecond))
	}
	fmt.Fprintf(&b, "  %-26s %-8s %s\n", "suite (with setup)", "", time.Since(suiteStart).Round(100*time.Millisecond))
	t.Log(b.String())
	fmt.Fprint(os.Stderr, b.String())
}

// newSuite connects to the cluster, starts Redis and the OpenID provider on
// the node address, and prepares the README runner with this run's values.
func newSuite(t *testing.T) *suite {
	t.Helper()
	if env == nil {
		t.Fatal("TestMain did not prepare the environment")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env.kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", env.kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("kubernetes client: %v", err)
	}
	id := make([]byte, 3)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	s := &suite{env: env, kube: kube, runID: hex.EncodeToString(id)}
	s.injectorNS = "mcp-oidc-injector"
	s.appNS = "mcp-apps-" + s.runID
	s.ingress = startIngress(t)
	s.externalURL = s.ingress.URL()
	s.clusterURL = "http://mcp-server." + s.appNS + ".svc.cluster.local"

	waitNamespaceGone(t, kube, s.injectorNS)

	password := make([]byte, 16)
	if _, err := rand.Read(password); err != nil {
		t.Fatal(err)
	}
	s.redis = redisserver.Start(t, redisserver.WithBind(nodeIP), redisserver.WithPassword(hex.EncodeToString(password)))
	s.idp = startProvider(t)

	values := map[string]string{
		"INJECTOR_NAMESPACE":   s.injectorNS,
		"NAMESPACE":            s.appNS,
		"IMAGE_REGISTRY":       "ghcr.io/mcp-oidc-proxy",
		"IMAGE_TAG":            env.version,
		"OIDC_ISSUER":          s.idp.Issuer(),
		"OIDC_CLIENT_ID":       oidcprovider.DefaultClientID,
		"OIDC_CLIENT_SECRET":   oidcprovider.DefaultClientSecret,
		"REDIS_URL":            s.redis.URL(),
		"EXTERNAL_URL":         s.externalURL,
		"ALLOWED_EMAIL_DOMAIN": "example.com",
		"INSECURE_COOKIES":     "true",
	}
	helmHome := t.TempDir()
	runEnv := []string{
		"PATH=" + strings.Join(append(append([]string(nil), env.pathDirs...), os.Getenv("PATH")), ":"),
		"KUBECONFIG=" + env.kubeconfig,
		"HOME=" + helmHome,
		// No user or CI helm configuration may change what is installed.
		"HELM_CONFIG_HOME=" + filepath.Join(helmHome, "config"),
		"HELM_CACHE_HOME=" + filepath.Join(helmHome, "cache"),
		"HELM_DATA_HOME=" + filepath.Join(helmHome, "data"),
	}
	if s.readme, err = newReadmeRunner(env.root, values, runEnv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.teardown(t) })
	return s
}

// waitNamespaceGone waits while the namespace is still being deleted (the
// teardown of an earlier run on a kept cluster deletes it in the
// background); the README's install cannot create objects in it until then.
func waitNamespaceGone(t *testing.T, kube kubernetes.Interface, name string) {
	t.Helper()
	eventually(t, podsTimeout, "namespace "+name+" of an earlier run to finish terminating", func() error {
		ctx, cancel := apiCtx()
		defer cancel()
		ns, err := kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		case ns.DeletionTimestamp != nil:
			return fmt.Errorf("still terminating")
		}
		return nil
	})
}

// startProvider runs the OpenID provider on the node address, so pods
// reach it, with its issuer on that address.
func startProvider(t *testing.T) *oidcprovider.Provider {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(nodeIP, "0"))
	if err != nil {
		t.Fatalf("listen on the node address %s (is the bridge mcpbr0 up?): %v", nodeIP, err)
	}
	idp, err := oidcprovider.New(ln, oidcprovider.Options{})
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- idp.Serve() }()
	t.Cleanup(func() {
		_ = idp.Close()
		if err := <-done; err != nil {
			t.Errorf("oidcprovider: %v", err)
		}
	})
	return idp
}

// teardown removes what the run installed, so a kept cluster is clean for
// the next run: the Helm release (and with it the webhook configuration)
// and the run's namespaces (deleted in the background). A failed run with
// MCP_CLUSTER_KEEP=1 leaves everything for inspection.
func (s *suite) teardown(t *testing.T) {
	if s.mcp != nil {
		_ = s.mcp.Close()
	}
	if t.Failed() && os.Getenv("MCP_CLUSTER_KEEP") == "1" {
		t.Logf("MCP_CLUSTER_KEEP=1 and the run failed: leaving release %s and namespaces %v for inspection (KUBECONFIG=%s)",
			release, append(s.namespaces, s.injectorNS), s.env.kubeconfig)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := s.helmCmd(ctx, "uninstall", release, "--namespace", s.injectorNS, "--ignore-not-found", "--wait", "--timeout", "90s"); err != nil {
		t.Errorf("helm uninstall: %v: %s", err, out)
	}
	for _, ns := range append(s.namespaces, s.injectorNS) {
		if out, err := s.kubectl(ctx, "delete", "namespace", ns, "--ignore-not-found", "--wait=false"); err != nil {
			t.Errorf("delete namespace %s: %v: %s", ns, err, out)
		}
	}
}

// readmeStep runs one README block and logs its output.
func (s *suite) readmeStep(t *testing.T, name string) {
	t.Helper()
	start := time.Now()
	out, err := s.readme.run(context.Background(), name, readmeStepTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("README step %s (%s):\n%s", name, time.Since(start).Round(100*time.Millisecond), indent(out))
}

func indent(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
