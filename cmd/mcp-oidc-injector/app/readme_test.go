package app

import (
	"flag"
	"os"
	"strings"
	"testing"
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
