package main

import (
	"archive/tar"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/hack/images/internal/ociimage"
)

func mustLayer(t *testing.T) v1.Layer {
	t.Helper()
	l, err := ociimage.Layer(BaseFiles([]byte("-----BEGIN CERTIFICATE-----\n")))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSpecs(t *testing.T) {
	want := map[string]string{
		"mcp-oidc-proxy":     "ghcr.io/mcp-oidc-proxy/mcp-oidc-proxy:v1.2.3",
		"mcp-oidc-injector":  "ghcr.io/mcp-oidc-proxy/mcp-oidc-injector:v1.2.3",
		"mcp-example-server": "ghcr.io/mcp-oidc-proxy/mcp-example-server:v1.2.3",
		"pause":              "registry.k8s.io/pause:3.10",
	}
	got := map[string]string{}
	for _, s := range Specs() {
		got[s.File] = s.Ref("v1.2.3")
		if s.User != "65532:65532" && s.File != "pause" {
			t.Errorf("%s runs as %q, want 65532:65532 (restricted Pod Security)", s.File, s.User)
		}
	}
	if !slices.Equal(sortedKeys(got), sortedKeys(want)) {
		t.Fatalf("images = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s ref = %s, want %s", k, got[k], v)
		}
	}
}

func sortedKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestBuildConfig(t *testing.T) {
	tests := []struct {
		file        string
		wantLayers  int
		wantVersion string
		wantEnvSSL  bool
	}{
		{"mcp-oidc-proxy", 2, "v1.2.3", true},
		{"mcp-example-server", 2, "v1.2.3", true},
		{"pause", 1, "3.10", false},
	}
	specs := map[string]Spec{}
	for _, s := range Specs() {
		specs[s.File] = s
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s := specs[tt.file]
			img, err := Build(s, "v1.2.3", "arm64", mustLayer(t), []byte("ELF"))
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || cf.Architecture != "arm64" {
				t.Errorf("platform %s/%s, want linux/arm64", cf.OS, cf.Architecture)
			}
			if !cf.Created.Time.Equal(ociimage.Epoch) {
				t.Errorf("created %v, want %v", cf.Created, ociimage.Epoch)
			}
			if got := cf.Config.Labels["org.opencontainers.image.version"]; got != tt.wantVersion {
				t.Errorf("version label %q, want %q", got, tt.wantVersion)
			}
			if got := cf.Config.Labels["org.opencontainers.image.source"]; got != Source {
				t.Errorf("source label %q, want %q", got, Source)
			}
			if got := slices.Contains(cf.Config.Env, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"); got != tt.wantEnvSSL {
				t.Errorf("SSL_CERT_FILE in env = %v, want %v (%q)", got, tt.wantEnvSSL, cf.Config.Env)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(layers) != tt.wantLayers {
				t.Fatalf("%d layers, want %d", len(layers), tt.wantLayers)
			}
			entries := layerEntries(t, layers[len(layers)-1])
			bin, ok := entries[s.Binary]
			if !ok || bin.Mode != 0o755 || bin.Uid != 0 {
				t.Errorf("binary %s in top layer = %+v, want mode 0755 owned by root", s.Binary, bin)
			}
		})
	}
}

func TestBaseLayer(t *testing.T) {
	entries := layerEntries(t, mustLayer(t))
	tests := []struct {
		path     string
		mode     int64
		uid      int
		contains string
	}{
		{"/tmp/", 0o1777, 0, ""},
		{"/home/nonroot/", 0o700, 65532, ""},
		{"/etc/passwd", 0o644, 0, "nonroot:x:65532:65532:"},
		{"/etc/group", 0o644, 0, "nonroot:x:65532:"},
		{"/etc/ssl/certs/ca-certificates.crt", 0o644, 0, "BEGIN CERTIFICATE"},
	}
	for _, tt := range tests {
		e, ok := entries[tt.path]
		if !ok {
			t.Errorf("%s missing from the base layer", tt.path)
			continue
		}
		if e.Mode != tt.mode || e.Uid != tt.uid {
			t.Errorf("%s: mode %o uid %d, want %o %d", tt.path, e.Mode, e.Uid, tt.mode, tt.uid)
		}
		if !strings.Contains(e.content, tt.contains) {
			t.Errorf("%s = %q, want it to contain %q", tt.path, e.content, tt.contains)
		}
	}
}

type entry struct {
	*tar.Header
	content string
}

// layerEntries reads a layer's files by absolute path (directories end in /).
func layerEntries(t *testing.T, l v1.Layer) map[string]entry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out["/"+h.Name] = entry{h, string(b)}
	}
}

func TestRunNeedsVersion(t *testing.T) {
	var stdout, stderr strings.Builder
	err := run(t.Context(), []string{"-out", t.TempDir()}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "-version is required") {
		t.Errorf("run without -version = %v, want the -version error", err)
	}
}
