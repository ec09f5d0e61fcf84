package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// goProfile is a CPU or allocation profile of the sidecar's request path
// taken in-process by test/e2e's BenchmarkCookieSessionRedis (the same
// Redis cookie path the throughput table measures, with the Go client in
// the same process): the way to see what the sidecar spends its time on
// while it serves no pprof endpoint of its own.
type goProfile struct {
	kind, path, top string
}

// benchProfiles runs the benchmark with -cpuprofile and -memprofile into
// dir and summarises each with go tool pprof -top, keeping only the samples
// that pass through this module's packages (so not the benchmark's client).
func benchProfiles(ctx context.Context, root, dir string, benchtime time.Duration) ([]goProfile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cpu := filepath.Join(dir, "cookie-redis.cpu.pprof")
	mem := filepath.Join(dir, "cookie-redis.alloc.pprof")
	testBin := filepath.Join(dir, "e2e.test")
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkCookieSessionRedis$",
		"-benchtime", benchtime.String(), "-benchmem", "-count=1",
		"-o", testBin, "-cpuprofile", cpu, "-memprofile", mem, "./test/e2e/")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	_ = os.Remove(testBin)
	if err != nil {
		return nil, fmt.Errorf("go test -bench BenchmarkCookieSessionRedis: %w\n%s", err, out)
	}
	var ps []goProfile
	for _, p := range []struct{ kind, path, index string }{
		{"CPU, by cumulative time", cpu, "-cum"}, {"allocations (alloc_space)", mem, "-sample_index=alloc_space"},
	} {
		args := []string{"tool", "pprof", "-top", "-nodecount=30", "-focus=mcp-oidc-proxy/mcp-oidc-proxy/pkg/"}
		if p.index != "" {
			args = append(args, p.index)
		}
		top := exec.CommandContext(ctx, "go", append(args, p.path)...)
		top.Dir = root
		b, err := top.Output()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof %s: %w", p.path, err)
		}
		ps = append(ps, goProfile{kind: p.kind, path: p.path, top: strings.TrimSpace(string(b))})
	}
	return ps, nil
}
