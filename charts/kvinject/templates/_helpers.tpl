{{/*
Names. Every object's name derives from kvinject.fullname (the release name, unless it
already holds the chart name or fullnameOverride is set), so two releases never collide.
*/}}
{{- define "kvinject.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kvinject.fullname" -}}
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

{{- define "kvinject.webhook.fullname" -}}
{{- printf "%s-webhook" (include "kvinject.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kvinject.csi.fullname" -}}
{{- printf "%s-csi-node" (include "kvinject.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate (tls.crt, tls.key). */}}
{{- define "kvinject.webhook.tlsSecretName" -}}
{{- if eq .Values.webhook.certificate.source "secret" }}
{{- required "webhook.certificate.secretName is required when webhook.certificate.source is secret" .Values.webhook.certificate.secretName }}
{{- else }}
{{- printf "%s-tls" (include "kvinject.webhook.fullname" .) }}
{{- end }}
{{- end }}

{{- define "kvinject.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kvinject.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kvinject
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kvinject.webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kvinject.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "kvinject.webhook.labels" -}}
{{ include "kvinject.labels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "kvinject.csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kvinject.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: csi-node
{{- end }}

{{- define "kvinject.csi.labels" -}}
{{ include "kvinject.labels" . }}
app.kubernetes.io/component: csi-node
{{- end }}

{{/* image renders repository[:tag][@digest]; the tag defaults to the chart's appVersion. */}}
{{- define "kvinject.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* The webhook's cluster configuration file (pkg/mutate.Config), for --config. */}}
{{- define "kvinject.webhook.config" -}}
{{- $d := .Values.webhook.defaults }}
{{- $c := dict "driverName" .Values.driverName "cloudName" $d.cloudName "mountPath" $d.mountPath "maxEntries" (int $d.maxEntries) }}
{{- if $d.vault }}{{ $_ := set $c "vault" $d.vault }}{{ end }}
{{- if $d.tenantId }}{{ $_ := set $c "tenantId" $d.tenantId }}{{ end }}
{{- if $d.identity }}{{ $_ := set $c "identity" $d.identity }}{{ end }}
{{- toYaml $c }}
{{- end }}

