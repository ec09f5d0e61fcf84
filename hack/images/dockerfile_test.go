package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the module root, relative to this package.
const repoRoot = "../.."

// dockerfile is what the consistency test reads from a Dockerfile: the
// build stage's `go build` and the final stage's image settings.
type dockerfile struct {
	BuildEnv   []string // VAR=value words before `go build`
	BuildFlags []string // flags of `go build` without values, e.g. -trimpath
	LDFlags    string
	Tags       string
	Output     string // -o
	Package    string // the last argument of go build
	CopyFrom   string // COPY --from=<stage> source in the final stage
	Binary     string // its destination
	User       string
	Expose     []string
	Entrypoint []string
}

// parseDockerfile reads the subset of Dockerfile syntax the project's
// Dockerfiles use: comments, line continuations, FROM, RUN, COPY, USER,
// EXPOSE and an exec-form ENTRYPOINT. Settings of the last stage win.
func parseDockerfile(text string) (dockerfile, error) {
	var d dockerfile
	var lines []string
	var cur strings.Builder
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	for _, line := range lines {
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "RUN":
			if !strings.Contains(rest, "go build") {
				continue
			}
			if err := d.parseGoBuild(rest); err != nil {
				return d, err
			}
		case "COPY":
			f := strings.Fields(rest)
			if len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				d.CopyFrom, d.Binary = f[1], f[2]
			}
		case "USER":
			d.User = rest
		case "EXPOSE":
			d.Expose = strings.Fields(rest)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.Entrypoint); err != nil {
				return d, fmt.Errorf("ENTRYPOINT %s: want the exec form (a JSON array): %w", rest, err)
			}
		}
	}
	return d, nil
}

func (d *dockerfile) parseGoBuild(cmd string) error {
	words, err := shellWords(cmd)
	if err != nil {
		return err
	}
	i := slices.Index(words, "go")
	if i < 0 || i+1 >= len(words) || words[i+1] != "build" {
		return fmt.Errorf("RUN %s: want `[VAR=value...] go build ...`", cmd)
	}
	d.BuildEnv = words[:i]
	args := words[i+2:]
	for j := 0; j < len(args); j++ {
		switch a := args[j]; {
		case a == "-ldflags" || a == "-o" || a == "-tags":
			if j+1 >= len(args) {
				return fmt.Errorf("RUN %s: %s without a value", cmd, a)
			}
			switch a {
			case "-o":
				d.Output = args[j+1]
			case "-tags":
				d.Tags = args[j+1]
			default:
				d.LDFlags = args[j+1]
			}
			j++
		case strings.HasPrefix(a, "-"):
			d.BuildFlags = append(d.BuildFlags, a)
		default:
			d.Package = a
		}
	}
	return nil
}

// shellWords splits a command line like sh does for the quoting the
// Dockerfiles use: blanks separate words, double and single quotes group.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

func TestParseDockerfile(t *testing.T) {
	got, err := parseDockerfile(`# comment
FROM golang AS build
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X a.b=${VERSION}" \
      -o /out/x ./cmd/x
FROM scratch
COPY --from=build /out/x /x
USER 1:2
EXPOSE 80 443
ENTRYPOINT ["/x", "run"]
`)
	if err != nil {
		t.Fatal(err)
	}
	want := dockerfile{
		BuildEnv: []string{"CGO_ENABLED=0"}, BuildFlags: []string{"-trimpath"},
		LDFlags: "-s -w -X a.b=${VERSION}", Output: "/out/x", Package: "./cmd/x",
		CopyFrom: "/out/x", Binary: "/x", User: "1:2", Expose: []string{"80", "443"},
		Entrypoint: []string{"/x", "run"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseDockerfile =\n%+v\nwant\n%+v", got, want)
	}
	for _, bad := range []string{`ENTRYPOINT /x`, `RUN go build -o`, `RUN go build -ldflags "-s`} {
		if _, err := parseDockerfile(bad); err == nil {
			t.Errorf("parseDockerfile(%q) = nil error, want one", bad)
		}
	}
}

// TestSpecsMatchDockerfiles keeps `make images` in step with the
// Dockerfiles: each image built from a Dockerfile's spec must have the
// Dockerfile's user, entrypoint, ports, binary path and build flags, in
// the spec and in the config of the image actually built. Every
// Dockerfile* in the repository root must have a spec.
func TestSpecsMatchDockerfiles(t *testing.T) {
	covered := map[string]bool{}
	for _, s := range Specs() {
		if s.Dockerfile == "" {
			continue
		}
		covered[s.Dockerfile] = true
		t.Run(s.Dockerfile, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join(repoRoot, s.Dockerfile))
			if err != nil {
				t.Fatal(err)
			}
			d, err := parseDockerfile(string(text))
			if err != nil {
				t.Fatal(err)
			}
			for _, diff := range compareSpec(t, s, d) {
				t.Error(diff)
			}
		})
	}
	matches, err := filepath.Glob(filepath.Join(repoRoot, "Dockerfile*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) == 0 {
		t.Fatalf("no Dockerfile* in %s", repoRoot)
	}
	for _, m := range matches {
		if !covered[filepath.Base(m)] {
			t.Errorf("%s has no spec in hack/images/specs.go; make images must build what it builds", filepath.Base(m))
		}
	}
}

// compareSpec lists every disagreement between a spec (and the image it
// builds) and its parsed Dockerfile.
func compareSpec(t *testing.T, s Spec, d dockerfile) []string {
	t.Helper()
	var diffs []string
	check := func(what string, spec, df any) {
		if !reflect.DeepEqual(spec, df) {
			diffs = append(diffs, fmt.Sprintf("%s: hack/images says %q, %s says %q", what, spec, s.Dockerfile, df))
		}
	}
	check("user", s.User, d.User)
	check("exposed ports", s.Ports, d.Expose)
	check("binary path", s.Binary, d.Binary)
	check("entrypoint", []string{s.Binary}, d.Entrypoint)
	check("-ldflags", s.LDFlags, d.LDFlags)
	check("-tags", s.Tags, d.Tags)
	check("package", s.Package, d.Package)
	check("COPY source is the go build output", d.Output, d.CopyFrom)
	if !slices.Contains(d.BuildEnv, "CGO_ENABLED=0") || !slices.Contains(BuildEnv("amd64"), "CGO_ENABLED=0") {
		diffs = append(diffs, fmt.Sprintf("CGO_ENABLED=0: hack/images env %q, %s env %q", BuildEnv("amd64"), s.Dockerfile, d.BuildEnv))
	}
	args := s.BuildArgs("v0", "/out")
	for _, f := range d.BuildFlags {
		if !slices.Contains(args, f) {
			diffs = append(diffs, fmt.Sprintf("go build flag %s of %s is missing from hack/images (%q)", f, s.Dockerfile, args))
		}
	}

	// The image actually built carries the same settings.
	img, err := Build(s, "v0", "amd64", mustLayer(t), []byte("binary"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	check("image user", cf.Config.User, d.User)
	check("image entrypoint", cf.Config.Entrypoint, d.Entrypoint)
	var ports []string
	for _, p := range d.Expose {
		ports = append(ports, p+"/tcp")
	}
	var imgPorts []string
	for p := range cf.Config.ExposedPorts {
		imgPorts = append(imgPorts, p)
	}
	slices.Sort(ports)
	slices.Sort(imgPorts)
	check("image exposed ports", imgPorts, ports)
	return diffs
}
