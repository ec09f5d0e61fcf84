{{/*
Chart name, overridable.
*/}}
{{- define "mcp-oidc-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. Every name the injector is told about
(--webhook-config-name, --webhook-service-name, --cert-secret-name) and every
RBAC resourceName derives from it, so they always agree.
*/}}
{{- define "mcp-oidc-proxy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mcp-oidc-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of the injector's pods. app.kubernetes.io/name is
mcp-oidc-injector as in config/: the webhook's objectSelector excludes pods
with that name, so the injector is never asked to admit itself.
*/}}
{{- define "mcp-oidc-proxy.selectorLabels" -}}
app.kubernetes.io/name: mcp-oidc-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mcp-oidc-proxy.labels" -}}
{{ include "mcp-oidc-proxy.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "mcp-oidc-proxy.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "mcp-oidc-proxy.chart" . }}
{{- end }}

{{- define "mcp-oidc-proxy.serviceAccountName" -}}
{{- default (include "mcp-oidc-proxy.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* Secret of the self-managed CA and serving certificate. */}}
{{- define "mcp-oidc-proxy.certSecretName" -}}
{{- printf "%s-certs" (include "mcp-oidc-proxy.fullname" .) }}
{{- end }}

{{/* cert-manager Certificate and the Secret it writes. */}}
{{- define "mcp-oidc-proxy.certificateName" -}}
{{- printf "%s-serving" (include "mcp-oidc-proxy.fullname" .) }}
{{- end }}
{{- define "mcp-oidc-proxy.tlsSecretName" -}}
{{- printf "%s-tls" (include "mcp-oidc-proxy.fullname" .) }}
{{- end }}

{{- define "mcp-oidc-proxy.defaultsConfigMapName" -}}
{{- printf "%s-sidecar-defaults" (include "mcp-oidc-proxy.fullname" .) }}
{{- end }}

{{- define "mcp-oidc-proxy.certManager" -}}
{{- $mode := .Values.certificates.mode }}
{{- if eq $mode "cert-manager" }}true
{{- else if ne $mode "self-managed" }}
{{- fail (printf "certificates.mode must be self-managed or cert-manager, got %q" $mode) }}
{{- end }}
{{- end }}

{{/*
mcp-oidc-proxy.secretPaths (list PREFIX VALUE) lists, comma-separated, the
paths in VALUE that hold a secret, by the injector's own rule
(app.CheckProxyDefaults): a non-empty key, at any depth, named like a
setting the sidecar marks secret (mcp-oidc-proxy.secretKeys, generated from
the Go code into _contract.tpl), or a *url key whose URL carries a
password. test/helm checks the result against pkg/config's secret markers.
*/}}
{{- define "mcp-oidc-proxy.secretPaths" -}}
{{- $prefix := index . 0 }}
{{- $v := index . 1 }}
{{- if kindIs "map" $v }}
{{- range $k, $child := $v }}
{{- $p := $k }}
{{- if ne $prefix "" }}{{ $p = printf "%s.%s" $prefix $k }}{{ end }}
{{- if not (and (kindIs "string" $child) (eq $child "")) }}
{{- if has $k (include "mcp-oidc-proxy.secretKeys" . | trim | splitList " ") }}{{ $p }}, {{ end }}
{{- if and (kindIs "string" $child) (hasSuffix "url" $k) (regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*:[^/?#@]+@" $child) }}{{ $p }} (a URL with a password), {{ end }}
{{- end }}
{{- include "mcp-oidc-proxy.secretPaths" (list $p $child) }}
{{- end }}
{{- else if kindIs "slice" $v }}
{{- range $i, $child := $v }}
{{- include "mcp-oidc-proxy.secretPaths" (list (printf "%s[%d]" $prefix $i) $child) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The sidecar defaults as YAML, refusing secrets: they would be copied into
every injected pod spec, readable by anyone who can read pods.
*/}}
{{- define "mcp-oidc-proxy.sidecarDefaults" -}}
{{- $d := .Values.sidecar.defaults | default dict }}
{{- if not (kindIs "map" $d) }}
{{- fail "sidecar.defaults must be a YAML mapping (the sidecar's configuration file format)" }}
{{- end }}
{{- $bad := include "mcp-oidc-proxy.secretPaths" (list "" $d) | trimSuffix ", " }}
{{- if $bad }}
{{- fail (printf "sidecar.defaults holds secrets (%s): secrets must come from each pod's Secret (annotation mcp-oidc-proxy.io/secret), not the cluster-wide defaults" $bad) }}
{{- end }}
{{- if $d }}{{ toYaml $d }}{{ end }}
{{- end }}
