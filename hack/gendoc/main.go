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

	injector "github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-injector/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

// Each generated table sits between a begin marker (a line starting with
// it) and its end marker.
var tables = []struct {
	begin, end string
	render     func(io.Writer)
}{
	{"<!-- settings:begin", "<!-- settings:end -->", render},
	{"<!-- injector-flags:begin", "<!-- injector-flags:end -->", renderInjector},
	{"<!-- pod-secret-keys:begin", "<!-- pod-secret-keys:end -->", renderSecretKeys},
}

func main() {
	write := flag.String("w", "", "rewrite the tables inside this file between their markers")
	flag.Parse()
	if *write == "" {
		for _, t := range tables {
			t.render(os.Stdout)
			fmt.Println()
		}
		return
	}
	if err := replace(*write); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
}

func replace(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := string(data)
	for _, t := range tables {
		b := strings.Index(s, t.begin)
		e := strings.Index(s, t.end)
		if b < 0 || e < b {
			return fmt.Errorf("%s has no %q ... %q markers", file, t.begin, t.end)
		}
		var table bytes.Buffer
		t.render(&table)
		lineEnd := b + strings.Index(s[b:], "\n") + 1
		s = s[:lineEnd] + table.String() + s[e:]
	}
	return os.WriteFile(file, []byte(s), 0o644)
}

// renderInjector documents the injector's flags from its own flag set.
func renderInjector(w io.Writer) {
	fmt.Fprintln(w, "| flag | environment | default | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fs := (&injector.Options{}).FlagSet(func(string) string { return "" })
	fs.VisitAll(func(f *flag.Flag) {
		env := injector.EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			def = "`" + f.DefValue + "`"
		}
		fmt.Fprintf(w, "| `--%s` | `%s` | %s | %s |\n", f.Name, env, def, strings.ReplaceAll(f.Usage, "|", "\\|"))
	})
}

// renderSecretKeys documents the keys of the pod's Secret and the settings
// they feed, from the contract the injector writes (config.PodSecretKeys).
func renderSecretKeys(w io.Writer) {
	fmt.Fprintln(w, "| Secret key | setting | variable in the sidecar |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, k := range config.PodSecretKeys() {
		fmt.Fprintf(w, "| `%s` | `%s` | `%s` |\n", k.Key, k.Setting.Path, k.Setting.EnvName())
	}
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
