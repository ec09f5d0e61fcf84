package app

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

// TestREADMEDocumentsEveryFlag keeps the README's injector table in step
// with the flags (regenerate with go run ./hack/gendoc -w README.md).
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	(&Options{}).FlagSet(func(string) string { return "" }).VisitAll(func(f *flag.Flag) {
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		for _, want := range []string{"`--" + f.Name + "`", "`" + env + "`"} {
			if !strings.Contains(string(readme), want) {
				t.Errorf("README does not document %s", want)
			}
		}
	})
}

// TestREADMEDocumentsEveryPodSecretKey keeps the README's table of the
// pod Secret's keys in step with what the injector writes (regenerate with
// go run ./hack/gendoc -w README.md).
func TestREADMEDocumentsEveryPodSecretKey(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.PodSecretKeys() {
		row := "| `" + k.Key + "` | `" + k.Setting.Path + "` | `" + k.Setting.EnvName() + "` |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README lacks the Secret key row %s", row)
		}
	}
}
