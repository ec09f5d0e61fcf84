// Command gendoc prints the README's settings table from the same field
// table the loader uses, so the documentation cannot drift from the code:
//
//	go run ./hack/gendoc > /tmp/settings.md
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

func main() {
	w := os.Stdout
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
