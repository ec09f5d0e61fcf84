package probereplay

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
)

// FuzzPathRoundTrip checks the path the injector writes for a container and
// kind is the path the sidecar serves it at: Path, through the encoding,
// names exactly that probe in the Replayer, and a request for any other
// path finds nothing. Container names are DNS-1123 labels (the API server
// refuses others), kinds the three constants.
func FuzzPathRoundTrip(f *testing.F) {
	f.Add("server", uint8(0), "/app-probes/server/readiness")
	f.Add("a-b-1", uint8(2), "/app-probes/a-b-1/startup/")
	f.Add("x", uint8(1), "/APP-PROBES/x/readiness")
	kinds := []probe.Kind{probe.Liveness, probe.Readiness, probe.Startup}
	f.Fuzz(func(t *testing.T, container string, kind uint8, other string) {
		if len(validation.IsDNS1123Label(container)) > 0 {
			return
		}
		path := probe.Path(container, kinds[int(kind)%len(kinds)])
		enc, err := probe.Encode(probe.Set{path: {HTTPGet: &probe.HTTPGetAction{Port: probe.PortNumber(1)}}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := probe.Decode(enc)
		if err != nil {
			t.Fatalf("Decode of the injector's encoding for %q: %v", path, err)
		}
		if _, ok := s[path]; !ok || len(s) != 1 {
			t.Fatalf("decoded set %v lacks %q", s, path)
		}
		if other == path {
			return
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path = other
		NewReplayer(s, Options{}).ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound {
			t.Fatalf("path %q answered %d for a set holding only %q", other, rec.Code, path)
		}
	})
}

// loopbackOnly answers every request and fails the test when one is
// addressed anywhere but 127.0.0.1:port. A URL without a host ("A:0" as a
// path makes the opaque URL "http:0", as it does in the kubelet's prober)
// goes nowhere: http.Transport refuses it with "no Host in request URL".
type loopbackOnly struct {
	t    *testing.T
	want string
}

func (l loopbackOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == "" {
		return nil, errors.New("no Host in request URL")
	}
	if r.URL.Host != l.want {
		l.t.Fatalf("HTTP probe replayed against %q (URL %q), want %s", r.URL.Host, r.URL, l.want)
	}
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
}

// FuzzReplayStaysOnLoopback: whatever path, host field and headers an HTTP
// probe carries, the replay connects to the app on 127.0.0.1 and the
// probe's port, never anywhere else.
func FuzzReplayStaysOnLoopback(f *testing.F) {
	f.Add("/healthz", "", "Host", "app.example", 8080, "HTTP")
	f.Add("//evil.example/x", "evil.example", "X-A", "b", 1, "https")
	f.Add("http://evil.example:81/x", "169.254.169.254", "Host", "evil.example:80", 65535, "")
	f.Add("@evil.example", "", "", "", 443, "ftp")
	f.Fuzz(func(t *testing.T, path, host, hname, hvalue string, port int, scheme string) {
		if port < 1 || port > 65535 {
			port = 1 + (port%65535+65535)%65535
		}
		a := &probe.HTTPGetAction{Path: path, Host: host, Port: probe.PortNumber(int32(port)), Scheme: scheme}
		if hname != "" {
			a.HTTPHeaders = []probe.HTTPHeader{{Name: hname, Value: hvalue}}
		}
		rp := NewReplayer(probe.Set{}, Options{})
		rp.http.Transport = loopbackOnly{t: t, want: net.JoinHostPort(loopback, strconv.Itoa(port))}
		_, _ = rp.replayHTTP(t.Context(), a, "kube-probe/1.36")
	})
}
