package main

import "github.com/mcp-oidc-proxy/mcp-oidc-proxy/hack/images/internal/ociimage"

// The distroless static image's users; the project's binaries run as
// nonroot (65532).
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"tty:x:5:\n" +
		"staff:x:50:\n" +
		"nonroot:x:65532:\n"
	nsswitch = "hosts: files dns\n"
)

// BaseFiles are what gcr.io/distroless/static-debian12:nonroot gives a
// static binary: users and groups naming nonroot 65532, a world-writable
// /tmp, the home directories, name-service order and the CA certificates
// (caCerts, the host's bundle).
func BaseFiles(caCerts []byte) []ociimage.File {
	dir := func(p string, mode int64, id int) ociimage.File {
		return ociimage.File{Path: p, Mode: mode, UID: id, GID: id, Dir: true}
	}
	file := func(p string, content []byte) ociimage.File {
		return ociimage.File{Path: p, Mode: 0o644, Content: content}
	}
	return []ociimage.File{
		dir("/etc", 0o755, 0),
		dir("/etc/ssl", 0o755, 0),
		dir("/etc/ssl/certs", 0o755, 0),
		dir("/home", 0o755, 0),
		dir("/home/nonroot", 0o700, 65532),
		dir("/root", 0o700, 0),
		dir("/tmp", 0o1777, 0),
		file("/etc/passwd", []byte(passwd)),
		file("/etc/group", []byte(group)),
		file("/etc/nsswitch.conf", []byte(nsswitch)),
		file("/etc/ssl/certs/ca-certificates.crt", caCerts),
	}
}
