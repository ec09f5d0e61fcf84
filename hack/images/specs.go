package main

import (
	"fmt"
	"strings"
)

// Source is the repository the images are built from (label
// org.opencontainers.image.source).
const Source = "https://github.com/mcp-oidc-proxy/mcp-oidc-proxy"

// Registry is where the project's images are named to live.
const Registry = "ghcr.io/mcp-oidc-proxy"

// distrolessEnv is what gcr.io/distroless/static-debian12 sets.
var distrolessEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
}

// Spec is one image: a static Go binary, optionally on the distroless-like
// base layer, and the config a Dockerfile would give it. The sidecar and
// injector specs must agree with their Dockerfiles (the consistency test
// checks it).
type Spec struct {
	File       string   // tarball name in the output directory, without .tar
	Repository string   // e.g. ghcr.io/mcp-oidc-proxy/mcp-oidc-proxy
	Tag        string   // fixed tag; empty means the release version
	Package    string   // Go main package, e.g. ./cmd/mcp-oidc-proxy
	LDFlags    string   // -ldflags; ${VERSION} is replaced by the tag
	Tags       string   // -tags, comma-separated; empty for none
	Binary     string   // path of the binary in the image
	User       string   // USER
	Ports      []string // EXPOSE, e.g. 15080 (tcp is implied)
	Base       bool     // put the distroless-like base layer under the binary
	Dockerfile string   // the Dockerfile this image reproduces, if any
}

// Specs are the images the tests need, named as in the shared brief of
// issue 8: the sidecar, the injector, the example MCP server and the pause
// image (containerd's sandbox_image).
func Specs() []Spec {
	return []Spec{
		{
			File: "mcp-oidc-proxy", Repository: Registry + "/mcp-oidc-proxy",
			Package: "./cmd/mcp-oidc-proxy", Binary: "/mcp-oidc-proxy",
			LDFlags: "-s -w -X github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-proxy/app.Version=${VERSION}",
			// Leaves grpc's golang.org/x/net/trace out (see the Makefile).
			Tags: "grpcnotrace",
			User: "65532:65532", Ports: []string{"15080", "15090"}, Base: true,
			Dockerfile: "Dockerfile.sidecar",
		},
		{
			File: "mcp-oidc-injector", Repository: Registry + "/mcp-oidc-injector",
			Package: "./cmd/mcp-oidc-injector", Binary: "/mcp-oidc-injector",
			LDFlags: "-s -w",
			User:    "65532:65532", Ports: []string{"9443", "8080", "8081"}, Base: true,
			Dockerfile: "Dockerfile.injector",
		},
		{
			File: "mcp-example-server", Repository: Registry + "/mcp-example-server",
			Package: "./examples/mcp-server", Binary: "/mcp-example-server",
			LDFlags: "-s -w",
			User:    "65532:65532", Ports: []string{"8080"}, Base: true,
		},
		{
			// Upstream pause runs as 65535 with only /pause in the image.
			File: "pause", Repository: "registry.k8s.io/pause", Tag: "3.10",
			Package: "./hack/images/pause", Binary: "/pause",
			LDFlags: "-s -w -X main.version=${VERSION}",
			User:    "65535:65535",
		},
	}
}

// TagFor is the image tag: the spec's fixed tag, else version.
func (s Spec) TagFor(version string) string {
	if s.Tag != "" {
		return s.Tag
	}
	return version
}

// Ref is the full image name for version.
func (s Spec) Ref(version string) string {
	return fmt.Sprintf("%s:%s", s.Repository, s.TagFor(version))
}

// LDFlagsFor expands ${VERSION} in the spec's -ldflags to the image tag.
func (s Spec) LDFlagsFor(version string) string {
	return strings.ReplaceAll(s.LDFlags, "${VERSION}", s.TagFor(version))
}

// ExposedPorts are the OCI config's exposed ports (tcp when not given).
func (s Spec) ExposedPorts() []string {
	out := make([]string, 0, len(s.Ports))
	for _, p := range s.Ports {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		out = append(out, p)
	}
	return out
}

// Env is the image's environment.
func (s Spec) Env() []string {
	if s.Base {
		return distrolessEnv
	}
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
}

// BuildArgs are the `go build` arguments, as in the Dockerfiles:
// -trimpath, the spec's -tags and -ldflags (CGO_ENABLED=0 is in BuildEnv).
func (s Spec) BuildArgs(version, out string) []string {
	args := []string{"build", "-trimpath"}
	if s.Tags != "" {
		args = append(args, "-tags", s.Tags)
	}
	return append(args, "-ldflags", s.LDFlagsFor(version), "-o", out, s.Package)
}

// BuildEnv is added to the environment of `go build`: a static binary for
// linux/arch, without VCS stamping (which would tie the digest to the
// worktree's state).
func BuildEnv(arch string) []string {
	return []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + arch, "GOFLAGS=-buildvcs=false"}
}
