// Package probereplay answers the injector's rewritten app probes on the
// sidecar's admin port: it replays each original kubelet probe (HTTP, TCP,
// gRPC) against the app on 127.0.0.1 and answers with its result. It is the
// sidecar's half of pkg/probe, kept apart so that the injector, which only
// encodes probes, links neither this nor gRPC.
package probereplay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
)

// loopback is the only address probes are replayed against: the app shares
// the sidecar's network namespace, and nothing in a request can point the
// replay elsewhere.
const loopback = "127.0.0.1"

// defaultTimeout is the kubelet's default timeoutSeconds.
const defaultTimeout = time.Second

// maxBody is how much of an HTTP probe's response is read, as the kubelet
// does (10 KiB).
const maxBody = 10 << 10

// maxRedirects is the kubelet's limit on same-host redirects.
const maxRedirects = 10

// Options are the dependencies of a Replayer.
type Options struct {
	// Logger receives one debug line per failed replay (nil: no logging).
	// probe.Probe failures are the app's business and its own probes' events
	// already report them, so they are not logged louder than debug.
	Logger *zap.Logger
}

// Replayer answers the rewritten probes on the admin listener by running the
// original probe against the app on 127.0.0.1, so the kubelet sees the app's
// own health without its probes passing authentication. It answers 200 when
// the original succeeds, 503 with the reason when it fails, and 404 for any
// path not in the probe.Set.
type Replayer struct {
	set  probe.Set
	log  *zap.Logger
	http *http.Client
}

var _ http.Handler = (*Replayer)(nil)

// NewReplayer serves set. The probe.Set is not copied; do not modify it afterwards.
func NewReplayer(set probe.Set, opts Options) *Replayer {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Replayer{set: set, log: opts.Logger, http: newProbeClient()}
}

// newProbeClient mirrors the kubelet's HTTP prober: no keep-alives (each
// probe is a fresh connection, as the kubelet's is), no proxy from the
// environment, no compression, certificates not verified, and redirects
// followed only to the same host name (at most 10); a redirect elsewhere
// ends the probe with the 3xx, which counts as success.
func newProbeClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:              nil,
			DisableKeepAlives:  true,
			DisableCompression: true,
			TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify probe certificates either
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			return nil
		},
	}
}

// ServeHTTP replays the probe registered at r.URL.Path.
func (rp *Replayer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := rp.set[r.URL.Path]
	if !ok {
		writeText(w, http.StatusNotFound, "no app probe is registered at this path")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeText(w, http.StatusMethodNotAllowed, "app probes answer GET only")
		return
	}
	timeout := defaultTimeout
	if p.TimeoutSeconds > 0 {
		timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	msg, err := rp.replay(ctx, p, r.Header.Get("User-Agent"))
	if err != nil {
		rp.log.Debug("app probe failed", zap.String("path", r.URL.Path), zap.Error(err))
		writeText(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeText(w, http.StatusOK, "ok: "+msg)
}

func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body+"\n")
}

// replay runs p and returns a short success message or the failure reason.
func (rp *Replayer) replay(ctx context.Context, p probe.Probe, userAgent string) (string, error) {
	switch {
	case p.HTTPGet != nil:
		return rp.replayHTTP(ctx, p.HTTPGet, userAgent)
	case p.TCPSocket != nil:
		return replayTCP(ctx, p.TCPSocket)
	case p.GRPC != nil:
		return replayGRPC(ctx, p.GRPC, userAgent)
	default:
		return "", errors.New("probe has no httpGet, tcpSocket or grpc handler")
	}
}

// port returns a numeric port. Named ports must have been resolved by the
// injector; one that was not is a failure that says so.
func port(p probe.Port) (int, error) {
	n := int(p.Number)
	if p.Name != "" {
		var err error
		if n, err = strconv.Atoi(p.Name); err != nil {
			return 0, fmt.Errorf("named port %q was not resolved to a number by the injector", p.Name)
		}
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is not in 1-65535", n)
	}
	return n, nil
}

func kubeletUA(incoming string) string {
	// The kubelet is our caller; pass its "kube-probe/<version>" on so
	// apps that recognise probes keep doing so.
	if strings.HasPrefix(incoming, "kube-probe/") {
		return incoming
	}
	return "kube-probe/mcp-oidc-proxy"
}

// replayHTTP follows the kubelet's HTTP prober: GET scheme://127.0.0.1:port
// with the probe's path and headers (a Host header sets the request's Host;
// the connection still goes to 127.0.0.1), User-Agent and Accept defaults,
// success on 200-399. The probe's host field is ignored: the target is
// always the app on loopback.
func (rp *Replayer) replayHTTP(ctx context.Context, a *probe.HTTPGetAction, userAgent string) (string, error) {
	n, err := port(a.Port)
	if err != nil {
		return "", fmt.Errorf("HTTP probe: %w", err)
	}
	scheme := strings.ToLower(a.Scheme)
	if scheme == "" {
		scheme = "http"
	}
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("HTTP probe: unsupported scheme %q", a.Scheme)
	}
	u, err := url.Parse(a.Path)
	if err != nil {
		u = &url.URL{Path: a.Path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(loopback, strconv.Itoa(n))
	u.User = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("HTTP probe: building request: %w", err)
	}
	h := http.Header{}
	for _, hh := range a.HTTPHeaders {
		h.Add(hh.Name, hh.Value)
	}
	if _, ok := h["User-Agent"]; !ok {
		h.Set("User-Agent", kubeletUA(userAgent))
	}
	if _, ok := h["Accept"]; !ok {
		h.Set("Accept", "*/*")
	} else if h.Get("Accept") == "" {
		h.Del("Accept")
	}
	req.Header = h
	req.Host = h.Get("Host")

	resp, err := rp.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("HTTP probe: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return fmt.Sprintf("HTTP probe succeeded with status code %d", resp.StatusCode), nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fmt.Sprintf("HTTP probe stopped at a redirect to another host (status code %d), which the kubelet counts as success", resp.StatusCode), nil
	default:
		return "", fmt.Errorf("HTTP probe failed with status code %d", resp.StatusCode)
	}
}

// replayTCP succeeds when a TCP connection to the port opens.
func replayTCP(ctx context.Context, a *probe.TCPSocketAction) (string, error) {
	n, err := port(a.Port)
	if err != nil {
		return "", fmt.Errorf("TCP probe: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(loopback, strconv.Itoa(n)))
	if err != nil {
		return "", fmt.Errorf("TCP probe: %w", err)
	}
	_ = conn.Close()
	return "TCP connection opened", nil
}

// replayGRPC calls grpc.health.v1.Health/Check over plaintext, as the
// kubelet does; only SERVING is success.
func replayGRPC(ctx context.Context, a *probe.GRPCAction, userAgent string) (string, error) {
	n, err := port(probe.PortNumber(a.Port))
	if err != nil {
		return "", fmt.Errorf("gRPC probe: %w", err)
	}
	conn, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(loopback, strconv.Itoa(n)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(kubeletUA(userAgent)))
	if err != nil {
		return "", fmt.Errorf("gRPC probe: %w", err)
	}
	defer conn.Close()
	service := ""
	if a.Service != nil {
		service = *a.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		switch status.Code(err) {
		case codes.Unimplemented:
			return "", fmt.Errorf("gRPC probe: the app does not implement the gRPC health protocol (grpc.health.v1.Health): %w", err)
		case codes.DeadlineExceeded:
			return "", fmt.Errorf("gRPC probe: health check did not complete in time: %w", err)
		default:
			return "", fmt.Errorf("gRPC probe: %w", err)
		}
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return "", fmt.Errorf("gRPC probe: service unhealthy (responded with %s)", s)
	}
	return "gRPC service is SERVING", nil
}
