package inject

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestResolveDrainDelay covers the annotation's spellings and bounds and
// the cluster default's caps, beyond the golden cases.
func TestResolveDrainDelay(t *testing.T) {
	grace := func(s int64) *int64 { return &s }
	for _, tt := range []struct {
		name   string
		v      value
		def    time.Duration
		grace  *int64
		want   int64
		denial string
	}{
		{name: "default", def: 5 * time.Second, want: 5},
		{name: "default rounded up", def: 1500 * time.Millisecond, want: 2},
		{name: "default off", def: 0, want: 0},
		{name: "default capped at half the grace period", def: 20 * time.Second, want: 15},
		{name: "default capped at half a short grace period", def: 5 * time.Second, grace: grace(3), want: 1},
		{name: "default with no grace period", def: 5 * time.Second, grace: grace(0), want: 0},
		{name: "default capped at the sidecar's maximum", def: time.Hour, grace: grace(7200), want: 300},
		{name: "seconds", v: value{v: "10", set: true}, want: 10},
		{name: "duration", v: value{v: "1m", set: true}, grace: grace(120), want: 60},
		{name: "zero", v: value{v: "0", set: true}, def: 5 * time.Second, want: 0},
		{name: "zero duration", v: value{v: "0s", set: true}, def: 5 * time.Second, want: 0},
		{name: "sub-second rounded up", v: value{v: "100ms", set: true}, want: 1},
		{name: "negative", v: value{v: "-1", set: true}, denial: "not a duration of zero or more"},
		{name: "words", v: value{v: "soon", set: true}, denial: "not a duration of zero or more"},
		{name: "empty", v: value{v: "", set: true}, denial: "not a duration of zero or more"},
		{name: "not shorter than the grace period", v: value{v: "30s", set: true}, denial: "not shorter than the pod's terminationGracePeriodSeconds (30)"},
		{name: "over the sidecar's maximum", v: value{v: "301", set: true}, grace: grace(3600), denial: "longer than the 300s"},
		{name: "longest duration", v: value{v: "2562047h47m16s", set: true}, denial: "longer than the 300s"},
		{name: "seconds past the duration range", v: value{v: "9223372037", set: true}, denial: "not a duration of zero or more"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: tt.grace}}
			var d denials
			got := resolveDrainDelay(&d, tt.v, tt.def, pod)
			switch {
			case tt.denial != "" && (len(d) != 1 || !strings.Contains(d[0].Error(), tt.denial)):
				t.Fatalf("denials %v, want one saying %q", d, tt.denial)
			case tt.denial == "" && len(d) > 0:
				t.Fatalf("denied: %v", d)
			case tt.denial == "" && got != tt.want:
				t.Fatalf("got %ds, want %ds", got, tt.want)
			}
		})
	}
}
