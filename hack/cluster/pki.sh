# shellcheck shell=bash
# Sourced by hack/cluster/up.sh: generates the cluster's throwaway PKI with
# the machine's openssl into PKI (one CA for every certificate, a service
# account key pair) and the kubeconfigs for the admin and each component.
# Keys never leave the state directory and are never printed.

# ca NAME CN: a self-signed CA PKI/NAME.{key,crt}.
ca() {
	openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
	openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 30 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$PKI/$1.crt" 2>/dev/null || die "openssl could not make the CA $1"
}

# cert NAME CN ORG KIND [SAN]: PKI/NAME.{key,crt} signed by the CA PKI/$SIGNER
# (default ca); KIND is client, server or both; SAN is an openssl
# subjectAltName list.
cert() {
	local name=$1 cn=$2 org=$3 kind=$4 san=${5-} usage subj ext
	case $kind in
	client) usage=clientAuth ;;
	server) usage=serverAuth ;;
	both) usage=serverAuth,clientAuth ;;
	*) die "cert: unknown kind $kind" ;;
	esac
	subj="/CN=$cn"
	[[ -z $org ]] || subj="/O=$org$subj"
	ext=$PKI/$name.ext
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$usage"
		[[ -z $san ]] || echo "subjectAltName=$san"
	} >"$ext"
	openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
	openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/${SIGNER:-ca}.crt" -CAkey "$PKI/${SIGNER:-ca}.key" \
		-CAcreateserial -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null ||
		die "openssl could not sign $name"
	rm -f "$PKI/$name.csr" "$ext"
}

# kubeconfig FILE USER CERTNAME: a kubeconfig for the API server with a client cert.
kubeconfig() {
	local file=$1 user=$2 certname=$3
	cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: mcp-oidc
  cluster:
    server: $APISERVER_URL
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$certname.crt
    client-key: $PKI/$certname.key
contexts:
- name: mcp-oidc
  context:
    cluster: mcp-oidc
    user: $user
    namespace: default
current-context: mcp-oidc
KC
	chmod 600 "$file"
}

generate_pki() {
	command -v openssl >/dev/null 2>&1 || die "openssl is missing; install it with: apt-get install -y openssl"
	rm -rf "$PKI"
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	ca ca mcp-oidc-cluster-ca
	# The front proxy (requestheader) CA of the aggregation layer: the
	# controller manager and scheduler read it for delegated authentication.
	ca front-proxy-ca mcp-oidc-cluster-front-proxy-ca
	SIGNER=front-proxy-ca cert front-proxy-client front-proxy-client "" client

	cert apiserver kube-apiserver "" server \
		"IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters client
	cert admin kubernetes-admin system:masters client
	cert kube-controller-manager system:kube-controller-manager "" client
	cert kube-scheduler system:kube-scheduler "" client
	cert kube-proxy system:kube-proxy "" client
	cert kubelet "system:node:$NODE_NAME" system:nodes client
	cert kubelet-serving "system:node:$NODE_NAME" system:nodes server "IP:$NODE_IP,DNS:$NODE_NAME"

	# Service account tokens: the API server signs with the private key and
	# verifies with the public one; the controller manager signs too.
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	chmod 600 "$PKI"/*.key

	kubeconfig "$KUBECONFIG_ADMIN" kubernetes-admin admin
	kubeconfig "$STATE/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
	kubeconfig "$STATE/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler
	kubeconfig "$STATE/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
	kubeconfig "$STATE/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet
	log "generated a throwaway PKI in $PKI"
}
