// Command images builds the container images the tests need as OCI
// tarballs, without a container engine or a registry (`make images`): the
// sidecar and the injector as their Dockerfiles build them, the example MCP
// server, and the pause image containerd uses as its sandbox image. Each
// binary is compiled with `go build` like the Dockerfiles do, put on a
// distroless-like base layer made here, and written to -out as <name>.tar,
// importable with `ctr -n k8s.io images import`. Builds are reproducible:
// the same sources give the same digests.
//
// Flags: -version (the release version, the tag of the project's images;
// `make images` passes the chart's appVersion), -out (default bin/images),
// -ca-certs (the CA bundle put in the images), -arch (default the host's),
// -go (the go command).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/hack/images/internal/ociimage"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	version string
	out     string
	caCerts string
	arch    string
	goCmd   string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.version, "version", "", "release version: the tag of the project's images (required)")
	fs.StringVar(&o.out, "out", "bin/images", "directory the tarballs are written to")
	fs.StringVar(&o.caCerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle put in the images' base layer")
	fs.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH of the images")
	fs.StringVar(&o.goCmd, "go", "go", "go command used to compile the binaries")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.version == "" {
		return errors.New("-version is required (make images passes the chart's appVersion)")
	}
	ca, err := os.ReadFile(o.caCerts)
	if err != nil {
		return fmt.Errorf("CA certificates (install ca-certificates, or pass -ca-certs): %w", err)
	}
	base, err := ociimage.Layer(BaseFiles(ca))
	if err != nil {
		return fmt.Errorf("base layer: %w", err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	work, err := os.MkdirTemp("", "images-")
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(work)

	for _, s := range Specs() {
		binPath := filepath.Join(work, s.File)
		if err := compile(ctx, o, s, binPath, stderr); err != nil {
			return err
		}
		binary, err := os.ReadFile(binPath)
		if err != nil {
			return fmt.Errorf("%s: %w", s.File, err)
		}
		img, err := Build(s, o.version, o.arch, base, binary)
		if err != nil {
			return fmt.Errorf("%s: %w", s.File, err)
		}
		dst := filepath.Join(o.out, s.File+".tar")
		if err := ociimage.WriteFile(dst, s.Ref(o.version), img); err != nil {
			return err
		}
		digest, err := img.Digest()
		if err != nil {
			return fmt.Errorf("%s digest: %w", s.File, err)
		}
		fmt.Fprintf(stdout, "%s\t%s\t%s\n", s.Ref(o.version), dst, digest)
	}
	return nil
}

// compile builds the spec's binary like its Dockerfile does.
func compile(ctx context.Context, o options, s Spec, out string, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, o.goCmd, s.BuildArgs(o.version, out)...)
	cmd.Env = append(os.Environ(), BuildEnv(o.arch)...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", s.Package, err)
	}
	return nil
}

// Build assembles the spec's image: base (when the spec wants it) under a
// layer holding binary at the spec's path, root-owned and executable.
func Build(s Spec, version, arch string, base v1.Layer, binary []byte) (v1.Image, error) {
	bin, err := ociimage.Layer([]ociimage.File{{Path: s.Binary, Mode: 0o755, Content: binary}})
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}
	var layers []v1.Layer
	if s.Base {
		layers = append(layers, base)
	}
	layers = append(layers, bin)
	return ociimage.Image(layers, ociimage.Config{
		Entrypoint:   []string{s.Binary},
		User:         s.User,
		ExposedPorts: s.ExposedPorts(),
		Env:          s.Env(),
		Labels: map[string]string{
			"org.opencontainers.image.version": s.TagFor(version),
			"org.opencontainers.image.source":  Source,
		},
		OS:           "linux",
		Architecture: arch,
	})
}
