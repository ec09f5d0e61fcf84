package probe

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzDecode throws arbitrary values of the probe environment variable at
// Decode, the sidecar's side of the injector-to-sidecar encoding. An accepted
// set has only paths under PathPrefix and exactly one handler per probe, and
// it survives Encode and Decode unchanged.
func FuzzDecode(f *testing.F) {
	seed, err := Encode(Set{
		Path("server", Liveness):  {HTTPGet: &HTTPGetAction{Path: "/healthz", Port: PortNumber(8080)}, TimeoutSeconds: 3},
		Path("server", Readiness): {TCPSocket: &TCPSocketAction{Port: PortNumber(8080)}},
		Path("sidecar", Startup):  {GRPC: &GRPCAction{Port: 9090}},
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
