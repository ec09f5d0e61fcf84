// Package memlimit turns the container's memory limit into the Go
// runtime's soft memory limit (runtime/debug.SetMemoryLimit), so that a
// sidecar holding many streams collects its garbage before the kernel's
// OOM killer counts it, instead of only when the heap doubles (GOGC).
//
// The limit comes in as a byte count (the injector passes the container's
// limits.memory through the downward API) and the runtime gets a share of
// it (Fraction), leaving room for what the runtime does not govern: the
// binary's text, and memory already freed but not yet returned to the
// kernel. An explicit GOMEMLIMIT is the operator's own choice and wins.
package memlimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Fraction is the share of the container limit given to the Go runtime.
const Fraction = 0.9

// GoEnv is the Go runtime's own setting; when it is present the runtime has
// already applied it and Derive leaves it alone.
const GoEnv = "GOMEMLIMIT"

// ErrSyntax is wrapped by Parse's errors.
var ErrSyntax = errors.New("not a memory size (use bytes, or a suffix Ki, Mi, Gi, Ti, k, M, G, T)")

var suffixes = []struct {
	s string
	m float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// Parse reads a memory size the way Kubernetes quantities write the usual
// ones: plain bytes ("536870912", what resourceFieldRef gives), or a whole
// or decimal number with a binary (Ki..Ti) or decimal (k..T) suffix. Empty
// is 0 (no limit).
func Parse(raw string) (int64, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return 0, nil
	}
	mult := 1.0
	for _, suf := range suffixes {
		if num, ok := strings.CutSuffix(s, suf.s); ok {
			s, mult = num, suf.m
			break
		}
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || x < 0 || math.IsInf(x, 0) || math.IsNaN(x) || strings.ContainsAny(s, "eExXpP_") {
		return 0, fmt.Errorf("%q: %w", raw, ErrSyntax)
	}
	b := x * mult
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("%q: too large: %w", raw, ErrSyntax)
	}
	return int64(b), nil
}

// Decision says what Derive chose and why, for the start-up log line.
type Decision struct {
	// Limit is the soft limit to apply in bytes; 0 means leave the runtime
	// as it is.
	Limit int64
	// Container is the parsed container limit (0 when none was given).
	Container int64
	// FromGoEnv is set when GOMEMLIMIT was present and wins.
	FromGoEnv bool
}

// Derive decides the soft limit from the container limit setting and the
// value of GOMEMLIMIT in the environment.
func Derive(setting, goEnv string) (Decision, error) {
	c, err := Parse(setting)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Container: c}
	if strings.TrimSpace(goEnv) != "" {
		d.FromGoEnv = true
		return d, nil
	}
	if c > 0 {
		d.Limit = int64(float64(c) * Fraction)
	}
	return d, nil
}

// Apply sets d.Limit with set (runtime/debug.SetMemoryLimit in the binary)
// when there is one, and returns the limit now in force (set(-1) reads it).
func Apply(d Decision, set func(int64) int64) int64 {
	if d.Limit > 0 {
		set(d.Limit)
	}
	return set(-1)
}
