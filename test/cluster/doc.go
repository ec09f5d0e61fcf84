// Package cluster is the end-to-end suite on a real one-node Kubernetes
// cluster (hack/cluster/up.sh: containerd, kubelet, kube-proxy, the API
// server), run by `make test`. It walks the README's "On Kubernetes"
// section as a user would (its ```sh step=<name> blocks, run with bash and
// this run's values for the settings) and then checks, for real, what the
// envtest suites cannot: that the kubelet and the container runtime accept
// what the injector writes.
//
// The steps (one subtest each, most in a namespace of their own):
//  1. helm install the chart into a namespace enforcing Pod Security
//     restricted; the injector becomes Ready through the kubelet's probes
//     and publishes its self-managed caBundle, which trusts what it serves.
//  2. Redis and the OpenID provider run on the host, on the node address
//     198.18.0.1; the README's Secret, ConfigMap and annotated Deployment (2
//     replicas) come up Ready, so the kubelet ran the rewritten probes
//     through the sidecar.
//  3. From the host: the Service and each pod answer 401 without
//     credentials; a browser login through the Service works and its cookie
//     works on both pods.
//  4. The official Go SDK MCP client completes the façade's OAuth flow
//     through the Service and calls whoami, which sees the identity.
//  5. An allow-list edit of the ConfigMap reaches both pods without a
//     restart within reloadBound.
//  6. kubectl rollout restart logs nobody out (sessions live in Redis) and
//     an SSE stream open during it ends cleanly.
//  7. Port takeover on the node: in rebind mode (the README's restricted
//     namespace) the app's localhost port is unreachable from outside; in
//     redirect mode (a privileged namespace) the nftables rule sends the
//     pod port to the proxy.
//  8. A Job with the annotation completes: the native sidecar exits.
//  9. With the injector scaled to 0 annotated pods are refused with a clear
//     message and other pods are created; scaled back, injection resumes.
//  10. MCP sessions behind the README's plain Service (no session affinity),
//     every request on a new connection so they land on both pods: the Go
//     SDK client pinned to 2025-11-25 and the official TypeScript SDK 1.x
//     client (test/interop/ts/calls.mjs) each complete 50 tool calls in one
//     session, and the sidecars' mcp_oidc_proxy_mcp_session_hops_total
//     shows the requests forwarded to the owning pod. Killing the owner:
//     the next call gets session not found (404) and a new session works;
//     on a second Deployment with mcp_session.replay_initialize (and debug
//     logs, which show each hop on both pods with one request id) the
//     session goes on without an error.
//  11. An annotated pod with no configuration source is refused at admission
//     with the fix in the message.
//
// It needs root, the kube binaries (hack/kube-bins.sh), helm
// (hack/helm-bin.sh), the images (`make images`), and Node.js with npm for
// step 10; without them it fails and says how to get them. It calls hack/cluster/up.sh (idempotent; it
// imports bin/images/*.tar) and, if this run started the cluster,
// hack/cluster/down.sh at the end (MCP_CLUSTER_KEEP=1 keeps it). The suite
// removes what it installed (the Helm release, its namespaces) unless it
// failed with MCP_CLUSTER_KEEP=1. `make test` runs it after the other
// packages (`make test-cluster` alone); to run it by hand:
//
//	sudo make images cluster-up
//	sudo go test -count=1 -v -timeout 30m ./test/cluster/
//
// Settings (environment): KUBECTL and HELM (default bin/kubectl and
// bin/helm), VERSION (the images' tag, as given to `make images`; default
// the chart's appVersion), MCP_CLUSTER_KEEP. The elapsed time of each step
// and of the suite is printed at the end; with images built and the
// cluster running the suite takes about a minute and a half here.
package cluster
