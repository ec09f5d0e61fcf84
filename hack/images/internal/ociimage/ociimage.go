// Package ociimage assembles container images from plain files, without a
// container engine or a registry, and writes them as OCI image-layout
// tarballs that `ctr images import` and `docker load` both accept. Every
// timestamp is fixed, so the same files give the same image digest.
package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is the time stamped on every file, layer and image config, so that
// builds are reproducible: the same inputs give the same digest.
var Epoch = time.Unix(0, 0).UTC()

// File is one entry of a layer: a regular file when Dir is false, else a
// directory (Content is then ignored).
type File struct {
	Path    string // absolute path in the image, e.g. /etc/passwd
	Mode    int64  // permission bits, e.g. 0o644, 0o1777
	UID     int
	GID     int
	Dir     bool
	Content []byte
}

// Layer builds an image layer holding files. Missing parent directories
// are not created; list them as Dir entries. Entries are written sorted
// by path so that the order of files does not change the digest.
func Layer(files []File) (v1.Layer, error) {
	sorted := append([]File(nil), files...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	for _, f := range sorted {
		name := strings.TrimPrefix(path.Clean(f.Path), "/")
		if !path.IsAbs(f.Path) || name == "" {
			return nil, fmt.Errorf("layer entry %q: path must be absolute and not the root", f.Path)
		}
		if seen[name] {
			return nil, fmt.Errorf("layer entry %q: listed twice", f.Path)
		}
		seen[name] = true
		hdr := &tar.Header{
			Name: name, Mode: f.Mode, Uid: f.UID, Gid: f.GID,
			ModTime: Epoch, Format: tar.FormatPAX,
		}
		if f.Dir {
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Content))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %q: %w", f.Path, err)
		}
		if !f.Dir {
			if _, err := tw.Write(f.Content); err != nil {
				return nil, fmt.Errorf("layer entry %q: %w", f.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return layer, nil
}

// Config is what the image runs and how it is described: the parts of the
// OCI image config a Dockerfile sets.
type Config struct {
	Entrypoint   []string
	Cmd          []string
	User         string   // e.g. "65532:65532"
	ExposedPorts []string // e.g. "15080/tcp"
	Env          []string // KEY=value
	Labels       map[string]string
	OS           string // e.g. linux
	Architecture string // e.g. amd64
}

// Image stacks layers (first is the bottom) under cfg, with OCI media types
// and every time set to Epoch.
func Image(layers []v1.Layer, cfg Config) (v1.Image, error) {
	if cfg.OS == "" || cfg.Architecture == "" {
		return nil, errors.New("image config: OS and Architecture are required (containerd imports only matching platforms)")
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	adds := make([]mutate.Addendum, 0, len(layers))
	for i, l := range layers {
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{
			Created: v1.Time{Time: Epoch}, CreatedBy: fmt.Sprintf("hack/images layer %d", i),
		}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: Epoch}
	cf.OS, cf.Architecture = cfg.OS, cfg.Architecture
	cf.Config = v1.Config{
		Entrypoint: cfg.Entrypoint,
		Cmd:        cfg.Cmd,
		User:       cfg.User,
		Env:        cfg.Env,
		Labels:     cfg.Labels,
	}
	if len(cfg.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range cfg.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}
