{{/* Chart name, cut to 63 characters. */}}
{{- define "sightline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release + chart (or fullnameOverride), cut to 63 characters, trailing "-" trimmed.
Names derived from it add at most "-registry-headless" (18), so it is cut to 45. */}}
{{- define "sightline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sightline.registryName" -}}
{{- printf "%s-registry" (include "sightline.fullname" .) }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "sightline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sightline.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "sightline.labels" -}}
helm.sh/chart: {{ include "sightline.chart" . }}
{{ include "sightline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sightline
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sightline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sightline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per-role labels: include with (dict "ctx" $ "component" "registry"|"inference"). */}}
{{- define "sightline.componentLabels" -}}
{{ include "sightline.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "sightline.componentSelectorLabels" -}}
{{ include "sightline.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "sightline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sightline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: digest if set, else the tag, else the chart's appVersion. Never `latest`. */}}
{{- define "sightline.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if eq $tag "latest" }}{{ fail "image.tag must not be latest: pin a version or a digest" }}{{ end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "sightline.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "sightline.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "sightline.authSecretName" -}}
{{- default (printf "%s-auth" (include "sightline.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "sightline.encryptionSecretName" -}}
{{- default (printf "%s-encryption" (include "sightline.fullname" .)) .Values.encryption.existingSecret }}
{{- end }}

{{/* Seconds from pod deletion to SIGKILL: the preStop sleep + the server's drain (shutdownGraceMs) + 5 s of margin. */}}
{{- define "sightline.terminationGracePeriodSeconds" -}}
{{- add (int .Values.preStopSleepSeconds) (div (int .Values.config.shutdownGraceMs) 1000) 5 }}
{{- end }}

{{/*
Environment shared by both roles. Settings that depend on the deployment (listen on all interfaces,
paths of the mounted files) are environment variables; they win over config.yaml.
*/}}
{{- define "sightline.commonEnv" -}}
- name: SIGHTLINE_CONFIG
  value: /etc/sightline/config/config.yaml
- name: SIGHTLINE_GRPC__HOST
  value: "0.0.0.0"
- name: SIGHTLINE_GRPC__PORT
  value: {{ .Values.ports.grpc | quote }}
- name: SIGHTLINE_ADMIN__ENABLED
  value: "true"
- name: SIGHTLINE_ADMIN__HOST
  value: "0.0.0.0"
- name: SIGHTLINE_ADMIN__PORT
  value: {{ .Values.ports.admin | quote }}
- name: SIGHTLINE_SHUTDOWN_GRACE_MS
  value: {{ .Values.config.shutdownGraceMs | quote }}
{{- if .Values.tls.enabled }}
- name: SIGHTLINE_TLS__ENABLED
  value: "true"
- name: SIGHTLINE_TLS__CERT_FILE
  value: /etc/sightline/tls/tls.crt
- name: SIGHTLINE_TLS__KEY_FILE
  value: /etc/sightline/tls/tls.key
{{- if .Values.tls.clientAuth }}
- name: SIGHTLINE_TLS__CLIENT_CA_FILE
  value: /etc/sightline/tls/ca.crt
{{- end }}
{{- end }}
{{- if .Values.auth.enabled }}
- name: SIGHTLINE_AUTH__ENABLED
  value: "true"
- name: SIGHTLINE_AUTH__BOOTSTRAP_TOKEN_FILE
  value: /etc/sightline/auth/admin-token
{{- end }}
{{- if .Values.encryption.enabled }}
- name: SIGHTLINE_ENCRYPTION__KEY_FILE
  value: /etc/sightline/encryption/key
{{- if .Values.encryption.previousKeySecret }}
- name: SIGHTLINE_ENCRYPTION__PREVIOUS_KEY_FILES
  value: '["/etc/sightline/encryption-previous/key"]'
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes shared by both roles: the config file and the Secrets. */}}
{{- define "sightline.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "sightline.fullname" . }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "sightline.tlsSecretName" . }}
    defaultMode: 288  # 0440: owner root, group fsGroup (the pod user)
{{- end }}
{{- if .Values.auth.enabled }}
- name: auth
  secret:
    secretName: {{ include "sightline.authSecretName" . }}
    defaultMode: 288  # 0440: owner root, group fsGroup (the pod user)
{{- end }}
{{- if .Values.encryption.enabled }}
- name: encryption
  secret:
    secretName: {{ include "sightline.encryptionSecretName" . }}
    defaultMode: 288  # 0440: owner root, group fsGroup (the pod user)
{{- if .Values.encryption.previousKeySecret }}
- name: encryption-previous
  secret:
    secretName: {{ .Values.encryption.previousKeySecret }}
    defaultMode: 288  # 0440: owner root, group fsGroup (the pod user)
{{- end }}
{{- end }}
{{- end }}

{{- define "sightline.commonVolumeMounts" -}}
- name: config
  mountPath: /etc/sightline/config
  readOnly: true
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/sightline/tls
  readOnly: true
{{- end }}
{{- if .Values.auth.enabled }}
- name: auth
  mountPath: /etc/sightline/auth
  readOnly: true
{{- end }}
{{- if .Values.encryption.enabled }}
- name: encryption
  mountPath: /etc/sightline/encryption
  readOnly: true
{{- if .Values.encryption.previousKeySecret }}
- name: encryption-previous
  mountPath: /etc/sightline/encryption-previous
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/*
Probes. TLS off: native gRPC probes (grpc.health.v1.Health/Check on the gRPC port); liveness and
startup ask for the "liveness" service (SERVING while the process answers, whatever its models: ""
is NOT_SERVING until a model is ready, which must not restart a pod), readiness for the role's
service. TLS on: the kubelet's gRPC
probe cannot do TLS, so HTTP probes on the admin port (plain HTTP): /healthz and /readyz.
Include with (dict "ctx" $ "readinessService" "sightline.v1.Detector").
*/}}
{{- define "sightline.probes" -}}
{{- $v := .ctx.Values }}
{{- if $v.tls.enabled }}
startupProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml $v.probes.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml $v.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  {{- toYaml $v.probes.readiness | nindent 2 }}
{{- else }}
startupProbe:
  grpc:
    port: {{ $v.ports.grpc }}
    service: liveness
  {{- toYaml $v.probes.startup | nindent 2 }}
livenessProbe:
  grpc:
    port: {{ $v.ports.grpc }}
    service: liveness
  {{- toYaml $v.probes.liveness | nindent 2 }}
readinessProbe:
  grpc:
    port: {{ $v.ports.grpc }}
    service: {{ .readinessService | quote }}
  {{- toYaml $v.probes.readiness | nindent 2 }}
{{- end }}
{{- end }}

{{/*
preStop: sleep before SIGTERM. At SIGTERM Sightline turns its health NOT_SERVING and stops accepting
new calls at once, but removing a terminating pod from Endpoints, DNS answers and kube-proxy rules
happens in parallel and takes a few seconds; without the sleep, new connections routed to the pod in
that window are refused. `sleep` is the coreutils binary of the image (works on every Kubernetes
version, unlike the lifecycle `sleep` action).
*/}}
{{- define "sightline.lifecycle" -}}
{{- if gt (int .Values.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    exec:
      command: ["sleep", {{ .Values.preStopSleepSeconds | quote }}]
{{- end }}
{{- end }}

{{/*
A new random token in Sightline's format, sl_<id>_<secret>: id = 16 hex digits, secret = 32 random
bytes in base64url without padding (43 characters).
*/}}
{{- define "sightline.newToken" -}}
{{- $id := randAlphaNum 32 | sha256sum | trunc 16 }}
{{- $secret := randBytes 32 | replace "+" "-" | replace "/" "_" | trimSuffix "=" }}
{{- printf "sl_%s_%s" $id $secret }}
{{- end }}
