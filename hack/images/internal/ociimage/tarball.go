package ociimage

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations on the index entry that name the image. containerd (ctr
// images import) takes the full name from AnnotationImageName; the OCI
// ref.name holds the tag, as `docker save` writes it.
const (
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = "org.opencontainers.image.ref.name"
)

// dockerManifest is one entry of the docker-archive manifest.json that
// `docker load` and older importers read next to the OCI layout.
type dockerManifest struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// WriteFile writes img, named ref (a full reference such as
// registry.k8s.io/pause:3.10), to path as an OCI image-layout tarball that
// also carries a docker-archive manifest.json, like `docker save` since
// Docker 25. The file is replaced atomically.
func WriteFile(path, ref string, img v1.Image) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".image-*.tar")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, ref, img); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Write writes img named ref to w as an OCI image-layout tarball with a
// docker-archive manifest.json (see WriteFile).
func Write(w io.Writer, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image name %q must be a full reference with a tag: %w", ref, err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("manifest digest: %w", err)
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return fmt.Errorf("manifest media type: %w", err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	configDigest, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("config digest: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}

	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mediaType,
			Digest:    manifestDigest,
			Size:      int64(len(rawManifest)),
			Annotations: map[string]string{
				AnnotationImageName: tag.Name(),
				AnnotationRefName:   tag.TagStr(),
			},
		}},
	}
	rawIndex, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("index.json: %w", err)
	}
	docker := dockerManifest{Config: blobPath(configDigest), RepoTags: []string{tag.Name()}}

	tw := tar.NewWriter(w)
	if err := writeEntry(tw, "blobs/", nil); err != nil {
		return err
	}
	if err := writeEntry(tw, "blobs/sha256/", nil); err != nil {
		return err
	}
	written := map[v1.Hash]bool{}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("layer digest: %w", err)
		}
		docker.Layers = append(docker.Layers, blobPath(d))
		if written[d] {
			continue
		}
		written[d] = true
		if err := writeLayer(tw, d, l); err != nil {
			return err
		}
	}
	if err := writeEntry(tw, blobPath(configDigest), rawConfig); err != nil {
		return err
	}
	if err := writeEntry(tw, blobPath(manifestDigest), rawManifest); err != nil {
		return err
	}
	if err := writeEntry(tw, "index.json", rawIndex); err != nil {
		return err
	}
	rawDocker, err := json.Marshal([]dockerManifest{docker})
	if err != nil {
		return fmt.Errorf("manifest.json: %w", err)
	}
	if err := writeEntry(tw, "manifest.json", rawDocker); err != nil {
		return err
	}
	if err := writeEntry(tw, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close tarball: %w", err)
	}
	return nil
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

func writeLayer(tw *tar.Writer, d v1.Hash, l v1.Layer) error {
	size, err := l.Size()
	if err != nil {
		return fmt.Errorf("layer %s size: %w", d, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	}
	defer rc.Close()
	hdr := &tar.Header{Name: blobPath(d), Mode: 0o644, Size: size, ModTime: Epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	}
	if n, err := io.Copy(tw, rc); err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	} else if n != size {
		return fmt.Errorf("layer %s: wrote %d bytes, want %d", d, n, size)
	}
	return nil
}

// writeEntry writes a regular file, or a directory when name ends in "/".
func writeEntry(tw *tar.Writer, name string, content []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: Epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if name[len(name)-1] == '/' {
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tarball entry %s: %w", name, err)
	}
	if _, err := tw.Write(content); err != nil {
		return fmt.Errorf("tarball entry %s: %w", name, err)
	}
	return nil
}
