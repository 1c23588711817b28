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

{{/* The operator's user name as the API server sees it: its ServiceAccount's tokens. */}}
{{- define "leadership.operatorUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "leadership.serviceAccountName" . }}
{{- end }}

{{/*
The operator's own LeadershipLease, in the release namespace: the application its replicas elect
their leader with (`OPERATOR_APPLICATION` in operator/src/run.rs; a fixed name, not a setting).
*/}}
{{- define "leadership.operatorLease" -}}
leadership-operator
{{- end }}

{{/* The example's namespace. */}}
{{- define "leadership.exampleNamespace" -}}
{{- default .Release.Namespace .Values.example.namespace }}
{{- end }}

{{/*
The namespaces that get the sidecar's ServiceAccount and Role, space-separated (empty: none):
sidecar.namespaces, and the example's when it is enabled. None by default: a namespace is
onboarded by listing it.
*/}}
{{- define "leadership.sidecarNamespaces" -}}
{{- $all := .Values.sidecar.namespaces | default list }}
{{- if .Values.example.enabled }}
{{- $all = append $all (include "leadership.exampleNamespace" .) }}
{{- end }}
{{- join " " (uniq $all) }}
{{- end }}

{{/* An image reference, defaulting the tag to the appVersion. */}}
{{- define "leadership.image" -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) }}
{{- end }}

{{/*
The sidecar container, one definition for every pod that runs it: the example StatefulSet and the
webhook's template (the ConfigMap the operator reads). Arguments: "root" (the chart's context),
"env" (a list of {name, value}: the per-pod settings, which come first in the environment), and
"token" (true: mount the volume leadership-token, the sidecar's own ServiceAccount token, as the
webhook does in pods whose app containers get none).
*/}}
{{- define "leadership.sidecarContainer" -}}
name: leadership
image: {{ include "leadership.image" (dict "image" .root.Values.sidecar.image "chart" .root.Chart) }}
{{- with .root.Values.sidecar.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
restartPolicy: Always
env:
  {{- range .env }}
  - name: {{ .name }}
    value: {{ .value | quote }}
  {{- end }}
  {{- with .root.Values.sidecar.claimDuration }}
  - name: LEADERSHIP_CLAIM_DURATION
    value: {{ . | quote }}
  {{- end }}
  {{- with .root.Values.sidecar.leaseLength }}
  - name: LEADERSHIP_LEASE_LENGTH
    value: {{ . | quote }}
  {{- end }}
  - name: LEADERSHIP_SOCKET
    value: /run/leadership/leadership.sock
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  - name: LEADERSHIP_ADMIN_ADDRESS
    value: "0.0.0.0:{{ .root.Values.sidecar.adminPort }}"
ports:
  - name: leadership
    containerPort: {{ .root.Values.sidecar.adminPort }}
readinessProbe:
  httpGet:
    path: /readyz
    port: leadership
livenessProbe:
  httpGet:
    path: /healthz
    port: leadership
{{- with .root.Values.sidecar.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: {{ .root.Values.sidecar.socketGroup }}
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
volumeMounts:
  - name: leadership
    mountPath: /run/leadership
  {{- if .token }}
  - name: leadership-token
    mountPath: /var/run/secrets/kubernetes.io/serviceaccount
    readOnly: true
  {{- end }}
{{- end }}

{{/*
The sidecar's own ServiceAccount token, for pods that set automountServiceAccountToken: false: what
the kubelet's automount projects (a token bound to the pod, the cluster's CA, the namespace), as a
volume only the sidecar mounts. The webhook adds the same volume (operator/src/inject/patch.rs).
*/}}
{{- define "leadership.tokenVolume" -}}
name: leadership-token
projected:
  defaultMode: 292
  sources:
    - serviceAccountToken:
        expirationSeconds: 3600
        path: token
    - configMap:
        name: kube-root-ca.crt
        items:
          - key: ca.crt
            path: ca.crt
    - downwardAPI:
        items:
          - path: namespace
            fieldRef:
              apiVersion: v1
              fieldPath: metadata.namespace
{{- end }}

{{/* The webhook's names. */}}
{{- define "leadership.webhookName" -}}
{{ include "leadership.fullname" . }}-injector
{{- end }}
{{- define "leadership.webhookService" -}}
{{ include "leadership.fullname" . }}-webhook
{{- end }}
{{- define "leadership.webhookSecret" -}}
{{ include "leadership.fullname" . }}-webhook-tls
{{- end }}
{{/* The managed CA's key, apart from the serving certificate (only the operator reads it). */}}
{{- define "leadership.webhookCaSecret" -}}
{{ include "leadership.fullname" . }}-webhook-ca
{{- end }}

{{/* The alert rules (the PrometheusRule's spec; also a plain rules file for promtool). */}}
{{- define "leadership.alertGroups" -}}
{{- $rules := .Values.metrics.prometheusRule -}}
groups:
  - name: leadership
    rules:
      - alert: LeadershipNoLeader
        expr: max by (namespace, application) (leadership_operator_lease_held) == 0
        for: {{ $rules.noLeaderFor }}
        labels:
          severity: {{ $rules.severity }}
        annotations:
          summary: "{{ "{{ $labels.namespace }}/{{ $labels.application }}" }} has had no leader for {{ $rules.noLeaderFor }}"
          description: "No unit holds the LeadershipLease {{ "{{ $labels.application }}" }}: are its pods running and their sidecars ready? kubectl describe leadershiplease {{ "{{ $labels.application }}" }} -n {{ "{{ $labels.namespace }}" }}"
      - alert: LeadershipFlapping
        expr: sum by (namespace, application) (increase(leadership_operator_transitions_total[{{ $rules.flappingWindow }}])) > {{ $rules.flappingTransitions }}
        labels:
          severity: {{ $rules.severity }}
        annotations:
          summary: "{{ "{{ $labels.namespace }}/{{ $labels.application }}" }} changed leader more than {{ $rules.flappingTransitions }} times in {{ $rules.flappingWindow }}"
          description: "Leaders keep losing their lease: look for renewal errors, pods restarting, or a claim duration too short for the API server's latency."
      - alert: LeadershipOperatorNotLeading
        expr: (max(leadership_operator_active{namespace="{{ .Release.Namespace }}"}) or vector(0)) < 1
        for: {{ $rules.operatorNotLeadingFor }}
        labels:
          severity: {{ $rules.severity }}
        annotations:
          summary: "No leadership-operator replica in {{ .Release.Namespace }} has led for {{ $rules.operatorNotLeadingFor }}"
          description: "Crash failover stops (run-out claims are not cleared), new pods are not listed as members, and revocations, handovers and leader labels wait until an operator leads; renewals, releases and graceful handovers go on: kubectl logs -n {{ .Release.Namespace }} deploy/{{ include "leadership.fullname" . }}-operator"
      - alert: LeadershipRenewalErrors
        expr: sum by (namespace, pod) (increase(leadership_sidecar_claims_total{kind="renew", result="error"}[5m])) > 0
        for: {{ $rules.renewalErrorsFor }}
        labels:
          severity: {{ $rules.severity }}
        annotations:
          summary: "The sidecar of {{ "{{ $labels.namespace }}/{{ $labels.pod }}" }} fails to renew its lease"
          description: "Renewals get no answer (API server unreachable or forbidden): the leader steps down when its guarantee runs out. See the sidecar's log and /readyz."
      - alert: LeadershipOperatorReconcileErrors
        expr: sum by (kind) (increase(leadership_operator_reconcile_errors_total[5m])) > 0
        for: {{ $rules.renewalErrorsFor }}
        labels:
          severity: {{ $rules.severity }}
        annotations:
          summary: "The leadership operator fails to {{ "{{ $labels.kind }}" }}"
          description: "Its writes are refused or the API server cannot be reached; see its log."
      - alert: LeadershipWebhookCertificateExpiring
        expr: min(leadership_operator_webhook_certificate_expiry_timestamp_seconds) - time() < {{ $rules.certificateExpiryDays }} * 86400
        labels:
          severity: {{ $rules.severity }}
        annotations:
          summary: "The sidecar injection webhook's certificate expires in less than {{ $rules.certificateExpiryDays }} days"
          description: "Its renewal is not happening (the operator renews with a third of its validity left; cert-manager when webhook.certManager.enabled)."
{{- end }}
