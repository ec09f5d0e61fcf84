// Command mcp-oidc-injector is the mutating admission webhook that adds the
// mcp-oidc-proxy sidecar to pods annotated mcp-oidc-proxy.io/inject: "true".
package main

import (
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-injector/app"
)

func main() {
	if err := app.Main(ctrl.SetupSignalHandler(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
		os.Exit(1)
	}
}
