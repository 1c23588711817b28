{{/* The chart name. */}}
{{- define "leadership.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name prefix of every resource. */}}
{{- define "leadership.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "leadership.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "leadership.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "leadership.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "leadership.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "leadership.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leadership.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "leadership.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leadership.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespaces that get the sidecar's ServiceAccount and Role. */}}
{{- define "leadership.sidecarNamespaces" -}}
{{- if .Values.sidecar.namespaces }}{{ join " " .Values.sidecar.namespaces }}{{ else }}{{ .Release.Namespace }}{{ end }}
{{- end }}

{{/* An image reference, defaulting the tag to the appVersion. */}}
{{- define "leadership.image" -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) }}
{{- end }}
