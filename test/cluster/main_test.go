package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Where the cluster of hack/cluster/up.sh keeps its admin kubeconfig.
const defaultKubeconfig = "/var/lib/mcp-oidc-cluster/kubeconfig"

// Bounds of the cluster's lifecycle.
const (
	clusterUpTimeout   = 10 * time.Minute
	clusterDownTimeout = 3 * time.Minute
	readyzTimeout      = 10 * time.Second
)

// images are the tarballs `make images` writes to bin/images and up.sh
// imports (names in the project's shared brief).
var images = []string{"mcp-oidc-proxy.tar", "mcp-oidc-injector.tar", "mcp-example-server.tar", "pause.tar"}

// environment is what TestMain found and started: the tools, the cluster
// and the version of the images.
type environment struct {
	root       string // the repository
	kubectl    string
	helm       string
	kubeconfig string
	version    string // the images' tag
	// pathDirs hold kubectl and helm; they go first in the README steps'
	// PATH.
	pathDirs []string
}

// env is set by TestMain before any test runs and never changed after.
var env *environment

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	start := time.Now()
	e, err := newEnvironment()
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/cluster: %v\n", err)
		return 1
	}
	ctx := context.Background()
	wasUp := e.apiReady(ctx) == nil
	fmt.Fprintf(os.Stderr, "test/cluster: bringing the cluster up (hack/cluster/up.sh; it was %s)\n", map[bool]string{true: "already up", false: "down"}[wasUp])
	kubeconfig, err := e.script(ctx, clusterUpTimeout, "hack/cluster/up.sh")
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/cluster: hack/cluster/up.sh: %v\n", err)
		if !wasUp {
			e.down(ctx)
		}
		return 1
	}
	if k := strings.TrimSpace(string(kubeconfig)); k != "" {
		e.kubeconfig = k
	}
	fmt.Fprintf(os.Stderr, "test/cluster: cluster up after %s (KUBECONFIG=%s)\n", time.Since(start).Round(time.Second), e.kubeconfig)
	env = e
	code := m.Run()
	switch {
	case wasUp:
		fmt.Fprintln(os.Stderr, "test/cluster: the cluster was already up; leaving it running")
	case os.Getenv("MCP_CLUSTER_KEEP") == "1":
		fmt.Fprintln(os.Stderr, "test/cluster: MCP_CLUSTER_KEEP=1; leaving the cluster running (stop it with make cluster-down)")
	default:
		e.down(ctx)
	}
	fmt.Fprintf(os.Stderr, "test/cluster: whole run (cluster up, suite, cluster down) took %s\n", time.Since(start).Round(time.Second))
	return code
}

// newEnvironment checks what the suite needs and says how to get what is
// missing. It never skips: a machine without these cannot pass.
func newEnvironment() (*environment, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("must run as root (the cluster runs containerd, the kubelet and nftables); run `sudo make test`, or `sudo make cluster-up` and `sudo go test ./test/cluster/`")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, err
	}
	e := &environment{root: root, kubeconfig: defaultKubeconfig}
	e.kubectl = toolPath(os.Getenv("KUBECTL"), filepath.Join(root, "bin", "kubectl"))
	e.helm = toolPath(os.Getenv("HELM"), filepath.Join(root, "bin", "helm"))
	for _, tool := range []struct{ path, how string }{
		{e.kubectl, "build it with hack/kube-bins.sh (or set KUBECTL)"},
		{e.helm, "build it with hack/helm-bin.sh (or set HELM)"},
		{filepath.Join(root, "hack", "cluster", "up.sh"), "the cluster scripts are part of the repository"},
	} {
		if st, err := os.Stat(tool.path); err != nil || st.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%s is missing or not executable: %s", tool.path, tool.how)
		}
	}
	for _, img := range images {
		p := filepath.Join(root, "bin", "images", img)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s is missing: build the images with `make images`", p)
		}
	}
	e.pathDirs = []string{filepath.Dir(e.kubectl), filepath.Dir(e.helm)}
	if e.version = os.Getenv("VERSION"); e.version == "" {
		if e.version, err = chartAppVersion(filepath.Join(root, "charts", "mcp-oidc-proxy", "Chart.yaml")); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func toolPath(fromEnv, def string) string {
	if fromEnv != "" {
		return fromEnv
	}
	return def
}

var appVersionRe = regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?\s*$`)

// chartAppVersion reads appVersion, which `make images` tags the images
// with unless VERSION is given.
func chartAppVersion(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the chart's appVersion: %w", err)
	}
	m := appVersionRe.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s has no appVersion", path)
	}
	return string(m[1]), nil
}

// apiReady asks the API server's /readyz through kubectl.
func (e *environment) apiReady(ctx context.Context) error {
	if _, err := os.Stat(e.kubeconfig); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyzTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.kubectl, "--kubeconfig", e.kubeconfig, "get", "--raw", "/readyz").CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl get --raw /readyz: %w: %s", err, out)
	}
	return nil
}

// script runs one of the repository's scripts with a deadline and returns
// its stdout; its stderr (progress) goes to ours.
func (e *environment) script(ctx context.Context, timeout time.Duration, path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.root, path), args...)
	cmd.Dir = e.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return out.Bytes(), fmt.Errorf("did not finish within %s: %w", timeout, ctx.Err())
		}
		return out.Bytes(), err
	}
	return out.Bytes(), nil
}

// down stops the cluster this run started.
func (e *environment) down(ctx context.Context) {
	fmt.Fprintln(os.Stderr, "test/cluster: taking the cluster down (hack/cluster/down.sh)")
	if _, err := e.script(ctx, clusterDownTimeout, "hack/cluster/down.sh"); err != nil {
		fmt.Fprintf(os.Stderr, "test/cluster: hack/cluster/down.sh: %v\n", err)
	}
}
