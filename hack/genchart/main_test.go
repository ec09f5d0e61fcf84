package main

import (
	"os"
	"strings"
	"testing"
)

const chartFile = "../../charts/mcp-oidc-proxy/templates/_contract.tpl"

// TestChartContractIsCurrent fails while the chart's generated contract
// differs from what the Go code says.
func TestChartContractIsCurrent(t *testing.T) {
	var want strings.Builder
	render(&want)
	got, err := os.ReadFile(chartFile)
	if err != nil {
		t.Fatalf("%v (generate it with: go run ./hack/genchart -w charts/mcp-oidc-proxy/templates/_contract.tpl)", err)
	}
	if string(got) != want.String() {
		t.Errorf("%s is stale; regenerate it with: go run ./hack/genchart -w charts/mcp-oidc-proxy/templates/_contract.tpl\n got:\n%s\nwant:\n%s", chartFile, got, want.String())
	}
	if !strings.Contains(want.String(), "client_secret") {
		t.Errorf("the generated secret keys lack client_secret:\n%s", want.String())
	}
}
