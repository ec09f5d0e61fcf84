package probe

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzDecode throws arbitrary values of the probe environment variable at
// Decode, the sidecar's side of the injector-to-sidecar encoding. An accepted
// set has only paths under PathPrefix and exactly one handler per probe, and
// it survives Encode and Decode unchanged.
func FuzzDecode(f *testing.F) {
	seed, err := Encode(Set{
		Path("server", Liveness):  {HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}, TimeoutSeconds: 3},
		Path("server", Readiness): {TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
		Path("sidecar", Startup):  {GRPC: &corev1.GRPCAction{Port: 9090}},
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		seed, "", "  ", "{}", "null", `{"/metrics":{"httpGet":{"port":1}}}`,
		`{"/app-probes/a/liveness":{}}`,
		`{"/app-probes/a/liveness":{"httpGet":{"port":1},"tcpSocket":{"port":1}}}`,
		`{"/app-probes/../../metrics":{"httpGet":{"port":"http"}}}`, `[`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := Decode(v)
		if err != nil {
			return
		}
		for path, p := range s {
			if !strings.HasPrefix(path, PathPrefix) {
				t.Fatalf("accepted path %q outside %s", path, PathPrefix)
			}
			n := 0
			for _, set := range []bool{p.HTTPGet != nil, p.TCPSocket != nil, p.GRPC != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("accepted probe %q with %d handlers", path, n)
			}
		}
		enc, err := Encode(s)
		if err != nil {
			t.Fatalf("Encode of a decoded set: %v", err)
		}
		again, err := Decode(enc)
		if err != nil || !reflect.DeepEqual(normalise(again), normalise(s)) {
			t.Fatalf("Decode(Encode(s)) = %+v, %v; want %+v", again, err, s)
		}
	})
}

// normalise makes an empty and a nil set compare equal.
func normalise(s Set) Set {
	if len(s) == 0 {
		return nil
	}
	return s
}

// FuzzPathRoundTrip checks the path the injector writes for a container and
// kind is the path the sidecar serves it at: Path, through the encoding,
// names exactly that probe in the Replayer, and a request for any other
// path finds nothing. Container names are DNS-1123 labels (the API server
// refuses others), kinds the three constants.
func FuzzPathRoundTrip(f *testing.F) {
	f.Add("server", uint8(0), "/app-probes/server/readiness")
	f.Add("a-b-1", uint8(2), "/app-probes/a-b-1/startup/")
	f.Add("x", uint8(1), "/APP-PROBES/x/readiness")
	kinds := []Kind{Liveness, Readiness, Startup}
	f.Fuzz(func(t *testing.T, container string, kind uint8, other string) {
		if len(validation.IsDNS1123Label(container)) > 0 {
			return
		}
		path := Path(container, kinds[int(kind)%len(kinds)])
		enc, err := Encode(Set{path: {HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(1)}}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := Decode(enc)
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
		NewReplayer(s, ReplayerOptions{}).ServeHTTP(rec, req)
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
		a := &corev1.HTTPGetAction{Path: path, Host: host, Port: intstr.FromInt(port), Scheme: corev1.URIScheme(scheme)}
		if hname != "" {
			a.HTTPHeaders = []corev1.HTTPHeader{{Name: hname, Value: hvalue}}
		}
		rp := NewReplayer(Set{}, ReplayerOptions{})
		rp.http.Transport = loopbackOnly{t: t, want: net.JoinHostPort(loopback, strconv.Itoa(port))}
		_, _ = rp.replayHTTP(t.Context(), a, "kube-probe/1.36")
	})
}
