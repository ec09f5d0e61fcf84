package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func testFiles() []File {
	return []File{
		{Path: "/bin/app", Mode: 0o755, Content: []byte("binary")},
		{Path: "/bin", Mode: 0o755, Dir: true},
		{Path: "/tmp", Mode: 0o1777, Dir: true},
	}
}

func testImage(t *testing.T, files []File) v1.Image {
	t.Helper()
	l, err := Layer(files)
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image([]v1.Layer{l}, Config{
		Entrypoint: []string{"/bin/app"}, User: "65532:65532", ExposedPorts: []string{"8080/tcp"},
		Env: []string{"A=b"}, Labels: map[string]string{"k": "v"}, OS: "linux", Architecture: "amd64",
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestReproducible builds the same image twice from fresh layers, with the
// files listed in a different order, and wants the same digest and the same
// tarball bytes; a changed file must change the digest.
func TestReproducible(t *testing.T) {
	files := testFiles()
	reversed := []File{files[2], files[1], files[0]}
	a, b := testImage(t, files), testImage(t, reversed)
	da, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Errorf("digests differ for the same files: %s, %s", da, db)
	}
	var ta, tb bytes.Buffer
	if err := Write(&ta, "example.com/app:v1", a); err != nil {
		t.Fatal(err)
	}
	if err := Write(&tb, "example.com/app:v1", b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ta.Bytes(), tb.Bytes()) {
		t.Error("tarballs differ for the same image")
	}

	changed := testFiles()
	changed[0].Content = []byte("binary2")
	dc, err := testImage(t, changed).Digest()
	if err != nil {
		t.Fatal(err)
	}
	if dc == da {
		t.Error("a changed file kept the digest")
	}
}

func TestImageConfig(t *testing.T) {
	img := testImage(t, testFiles())
	mt, err := img.MediaType()
	if err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, %v; want %s", mt, err, types.OCIManifestSchema1)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cf.Created.Time.Equal(Epoch) || len(cf.History) != 1 || !cf.History[0].Created.Time.Equal(Epoch) {
		t.Errorf("times %v / %+v, want all %v", cf.Created, cf.History, Epoch)
	}
	c := cf.Config
	if strings.Join(c.Entrypoint, " ") != "/bin/app" || c.User != "65532:65532" || c.Labels["k"] != "v" ||
		strings.Join(c.Env, ",") != "A=b" {
		t.Errorf("config %+v", c)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want 8080/tcp", c.ExposedPorts)
	}
	if len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("rootfs diff ids %v, want one", cf.RootFS.DiffIDs)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		files []File
	}{
		{"relative path", []File{{Path: "etc/passwd"}}},
		{"root", []File{{Path: "/", Dir: true}}},
		{"listed twice", []File{{Path: "/a"}, {Path: "/a/"}}},
	}
	for _, tt := range tests {
		if _, err := Layer(tt.files); err == nil {
			t.Errorf("%s: Layer = nil error, want one", tt.name)
		}
	}
	if _, err := Image(nil, Config{}); err == nil {
		t.Error("Image without platform = nil error, want one")
	}
	if err := Write(io.Discard, "app", testImage(t, testFiles())); err == nil {
		t.Error("Write with a name without registry and tag = nil error, want one")
	}
}

// TestWriteFile checks the tarball's layout: the OCI index names the image
// for containerd, manifest.json names it for docker-archive importers, and
// every blob they point at is present with its digest.
func TestWriteFile(t *testing.T) {
	img := testImage(t, testFiles())
	path := filepath.Join(t.TempDir(), "app.tar")
	if err := WriteFile(path, "registry.example.com/team/app:v1.2.3", img); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("%s mtime %v, want %v", h.Name, h.ModTime, Epoch)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = b
	}

	var index v1.IndexManifest
	if err := json.Unmarshal(entries["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != digest {
		t.Fatalf("index.json manifests %+v, want the image %s", index.Manifests, digest)
	}
	ann := index.Manifests[0].Annotations
	if ann[AnnotationImageName] != "registry.example.com/team/app:v1.2.3" || ann[AnnotationRefName] != "v1.2.3" {
		t.Errorf("index annotations %v", ann)
	}
	if string(entries["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", entries["oci-layout"])
	}

	var docker []dockerManifest
	if err := json.Unmarshal(entries["manifest.json"], &docker); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(docker) != 1 || strings.Join(docker[0].RepoTags, ",") != "registry.example.com/team/app:v1.2.3" {
		t.Fatalf("manifest.json %+v", docker)
	}
	for _, p := range append([]string{docker[0].Config, blobPath(digest)}, docker[0].Layers...) {
		b, ok := entries[p]
		if !ok {
			t.Errorf("blob %s missing", p)
			continue
		}
		h, _, err := v1.SHA256(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if blobPath(h) != p {
			t.Errorf("blob %s has digest %s", p, h)
		}
	}
}

// TestDockerArchiveReadsBack reads the tarball through manifest.json, as
// docker-archive readers do (go-containerregistry's tarball, used by crane
// push), and wants the same config and layers.
func TestDockerArchiveReadsBack(t *testing.T) {
	img := testImage(t, testFiles())
	path := filepath.Join(t.TempDir(), "app.tar")
	if err := WriteFile(path, "registry.example.com/app:v1", img); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("registry.example.com/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	for _, f := range []func(v1.Image) (v1.Hash, error){
		func(i v1.Image) (v1.Hash, error) { return i.ConfigName() },
		func(i v1.Image) (v1.Hash, error) {
			ls, err := i.Layers()
			if err != nil || len(ls) != 1 {
				return v1.Hash{}, fmt.Errorf("layers %d: %w", len(ls), err)
			}
			return ls[0].DiffID()
		},
	} {
		want, err := f(img)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f(back)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("read back %s, want %s", got, want)
		}
	}
}
