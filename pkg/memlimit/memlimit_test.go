package memlimit

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "", want: 0},
		{in: "  ", want: 0},
		{in: "536870912", want: 512 << 20}, // what resourceFieldRef limits.memory gives
		{in: " 64Mi ", want: 64 << 20},
		{in: "1Gi", want: 1 << 30},
		{in: "1.5Gi", want: 3 << 29},
		{in: "2Ki", want: 2048},
		{in: "1Ti", want: 1 << 40},
		{in: "500M", want: 500e6},
		{in: "2G", want: 2e9},
		{in: "3k", want: 3000},
		{in: "3K", want: 3000},
		{in: "lots", err: true},
		{in: "-1", err: true},
		{in: "1e9", err: true},
		{in: "0x10", err: true},
		{in: "100m", err: true}, // a Kubernetes milli-quantity is no byte count
		{in: "64MiB", err: true},
		{in: "Mi", err: true},
		{in: "9999999999Ti", err: true},
		{in: "NaN", err: true},
		{in: "Inf", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.err {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("Parse(%q) = %d, %v; want ErrSyntax", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Parse(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDerive(t *testing.T) {
	tests := []struct {
		name           string
		setting, goEnv string
		want           Decision
		err            bool
	}{
		{name: "nothing given", want: Decision{}},
		{name: "container limit", setting: "1000000", want: Decision{Limit: 900000, Container: 1000000}},
		{name: "GOMEMLIMIT wins", setting: "1000000", goEnv: "500MiB", want: Decision{Container: 1000000, FromGoEnv: true}},
		{name: "GOMEMLIMIT alone", goEnv: "off", want: Decision{FromGoEnv: true}},
		{name: "bad setting", setting: "big", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Derive(tt.setting, tt.goEnv)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("Derive(%q, %q) = %+v, %v; want %+v, error %v", tt.setting, tt.goEnv, got, err, tt.want, tt.err)
			}
		})
	}
}

// fakeRuntime stands in for runtime/debug.SetMemoryLimit.
type fakeRuntime struct {
	limit int64
	sets  int
}

func (f *fakeRuntime) set(n int64) int64 {
	old := f.limit
	if n >= 0 {
		f.limit = n
		f.sets++
	}
	return old
}

func TestApply(t *testing.T) {
	const unlimited = int64(^uint64(0) >> 1)
	tests := []struct {
		name      string
		d         Decision
		want      int64
		wantCalls int
	}{
		{name: "a limit is set", d: Decision{Limit: 900, Container: 1000}, want: 900, wantCalls: 1},
		{name: "no limit leaves the runtime alone", d: Decision{}, want: unlimited},
		{name: "GOMEMLIMIT is left alone", d: Decision{Container: 1000, FromGoEnv: true}, want: unlimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &fakeRuntime{limit: unlimited}
			if got := Apply(tt.d, rt.set); got != tt.want || rt.sets != tt.wantCalls {
				t.Fatalf("Apply(%+v) = %d after %d sets; want %d after %d", tt.d, got, rt.sets, tt.want, tt.wantCalls)
			}
		})
	}
}
