package inject

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Golden cases live in testdata/<case>.yaml (a Pod, with a leading comment
// saying what it shows) and optionally testdata/<case>.settings.yaml (the
// namespace and the Settings fields that differ from testSettings). The
// expected outcome follows from the name: skip-* are skipped, deny-* denied,
// already-* already injected, anything else injected.
type outcome string

const (
	outInjected outcome = "injected"
	outAlready  outcome = "already"
	outSkipped  outcome = "skipped"
	outDenied   outcome = "denied"
)

func expectedOutcome(name string) outcome {
	switch {
	case strings.HasPrefix(name, "skip-"):
		return outSkipped
	case strings.HasPrefix(name, "deny-"):
		return outDenied
	case strings.HasPrefix(name, "already-"):
		return outAlready
	}
	return outInjected
}

// goldenSuffix is the output file for each outcome.
func goldenSuffix(o outcome) string {
	switch o {
	case outSkipped:
		return ".skipped.txt"
	case outDenied:
		return ".denied.txt"
	}
	return ".injected.yaml"
}

// testProxyDefaults are the cluster-wide sidecar defaults of the golden
// cases: the least that lets a pod without a ConfigMap start.
const testProxyDefaults = `oidc:
  discovery_url: https://login.example.com
  client_id: mcp-proxy
`

// testSettings are the cluster defaults the golden cases start from.
func testSettings() Settings {
	return Settings{
		Image:           "ghcr.io/mcp-oidc-proxy/mcp-oidc-proxy:v0.1.0",
		ImagePullPolicy: corev1.PullIfNotPresent,
		NativeSidecars:  true,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("50m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		InjectorNamespace: "mcp-oidc-system",
		ProxyDefaults:     testProxyDefaults,
		DrainDelay:        5 * time.Second, // the injector's default
	}
}

// caseNames lists every input in testdata.
func caseNames(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasSuffix(base, ".settings.yaml") || strings.HasSuffix(base, ".injected.yaml") {
			continue
		}
		names = append(names, strings.TrimSuffix(base, ".yaml"))
	}
	if len(names) == 0 {
		t.Fatal("no golden cases in testdata")
	}
	return names
}

type caseEnv struct {
	Namespace Namespace
	Settings  Settings
}

// loadCase reads a case's pod, namespace and settings.
func loadCase(t testing.TB, name string) (*corev1.Pod, Namespace, Settings) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(b, pod); err != nil {
		t.Fatalf("%s.yaml: %v", name, err)
	}
	env := caseEnv{Namespace: Namespace{Name: pod.Namespace}, Settings: testSettings()}
	b, err = os.ReadFile(filepath.Join("testdata", name+".settings.yaml"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		t.Fatal(err)
	default:
		if err := yaml.UnmarshalStrict(b, &env); err != nil {
			t.Fatalf("%s.settings.yaml: %v", name, err)
		}
	}
	return pod, env.Namespace, env.Settings
}

func toYAML(t testing.TB, v any) []byte {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compareGolden checks got against the file, or rewrites it with -update.
func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with: go test ./pkg/inject -update)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s differs at line %d:\n got: %q\nwant: %q\n(regenerate with: go test ./pkg/inject -update, then review the diff)", path, i+1, g, w)
		}
	}
}

func TestGolden(t *testing.T) {
	for _, name := range caseNames(t) {
		t.Run(name, func(t *testing.T) {
			pod, ns, s := loadCase(t, name)
			before := pod.DeepCopy()
			want := expectedOutcome(name)
			res, err := Mutate(pod, ns, s)

			if !equality.Semantic.DeepEqual(before, pod) {
				t.Fatal("Mutate modified its input")
			}
			var got outcome
			switch {
			case err != nil:
				got = outDenied
			case res.Skipped != "":
				got = outSkipped
			case res.AlreadyInjected:
				got = outAlready
			default:
				got = outInjected
			}
			if got != want {
				t.Fatalf("outcome = %s, want %s (err=%v, skipped=%q)", got, want, err, res.Skipped)
			}

			base := filepath.Join("testdata", name)
			// A case whose outcome changed must not leave a stale golden.
			for _, o := range []outcome{outInjected, outSkipped, outDenied} {
				stale := base + goldenSuffix(o)
				if goldenSuffix(o) == goldenSuffix(want) {
					continue
				}
				if _, err := os.Stat(stale); err == nil {
					if *update {
						if err := os.Remove(stale); err != nil {
							t.Fatal(err)
						}
					} else {
						t.Errorf("stale golden %s (run with -update)", stale)
					}
				}
			}

			switch want {
			case outDenied:
				if res.Pod != nil {
					t.Error("a denial returned a pod")
				}
				compareGolden(t, base+".denied.txt", []byte(err.Error()+"\n"))
			case outSkipped:
				if res.Pod != pod {
					t.Error("a skipped pod must be returned as given")
				}
				compareGolden(t, base+".skipped.txt", []byte(res.Skipped+"\n"))
			case outAlready:
				if res.Pod != pod {
					t.Error("an already injected pod must be returned as given")
				}
				compareGolden(t, base+".injected.yaml", toYAML(t, res.Pod))
				if in, _ := os.ReadFile(base + ".yaml"); !bytes.Equal(stripComments(in), toYAML(t, res.Pod)) {
					t.Error("already injected: output differs from input")
				}
			default:
				if res.Pod == pod {
					t.Error("an injected pod must be a copy")
				}
				compareGolden(t, base+".injected.yaml", toYAML(t, res.Pod))
			}
		})
	}
}

// stripComments drops the leading comment lines of a case file.
func stripComments(b []byte) []byte {
	var out []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, ""))
}
