// Command gendoc renders the README's settings table from the same field
// table the loader uses, so the documentation cannot drift from the code:
//
//	go run ./hack/gendoc              # print the table
//	go run ./hack/gendoc -w README.md # replace it between the settings markers
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

const (
	beginMarker = "<!-- settings:begin"
	endMarker   = "<!-- settings:end -->"
)

func main() {
	write := flag.String("w", "", "rewrite the table inside this file between the settings markers")
	flag.Parse()
	var table bytes.Buffer
	render(&table)
	if *write == "" {
		_, _ = os.Stdout.Write(table.Bytes())
		return
	}
	if err := replace(*write, table.String()); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
}

func replace(file, table string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := string(data)
	b := strings.Index(s, beginMarker)
	e := strings.Index(s, endMarker)
	if b < 0 || e < b {
		return fmt.Errorf("%s has no %q ... %q markers", file, beginMarker, endMarker)
	}
	lineEnd := b + strings.Index(s[b:], "\n") + 1
	out := s[:lineEnd] + table + s[e:]
	return os.WriteFile(file, []byte(out), 0o644)
}

func render(w io.Writer) {
	fmt.Fprintln(w, "| flag | environment | config file key | default | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	fmt.Fprintf(w, "| `--config` | `%s` | | | YAML configuration file |\n", config.ConfigFileEnv)
	fmt.Fprintln(w, "| `--version` | | | | print the version and exit |")
	for _, f := range config.Fields() {
		env := make([]string, len(f.Env))
		for i, e := range f.Env {
			env[i] = "`" + e + "`"
		}
		def := ""
		if f.Default != "" {
			def = "`" + f.Default + "`"
		}
		usage := f.Usage
		if f.Reload {
			usage += " *(reloadable)*"
		}
		if f.Secret {
			usage += " *(secret)*"
		}
		fmt.Fprintf(w, "| `--%s` %s | %s | `%s` | %s | %s |\n", f.Flag, f.Type(), strings.Join(env, "<br>"), f.Path, def, strings.ReplaceAll(usage, "|", "\\|"))
	}
}
