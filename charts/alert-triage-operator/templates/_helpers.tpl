{{- define "ato.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ato.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "ato.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ato.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ato.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ato.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ato.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ato.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ato.leaseName" -}}
{{- include "ato.fullname" . }}
{{- end }}

{{- define "ato.ledgerName" -}}
{{- printf "%s-ledger" (include "ato.fullname" .) }}
{{- end }}

{{/* Where the admission policies on AlertTriages apply (a binding's namespaceSelector). */}}
{{- define "ato.policyNamespaces" -}}
{{- $p := .Values.approvalPolicy }}
{{- if $p.namespaceSelector }}
namespaceSelector:
  {{- toYaml $p.namespaceSelector | nindent 2 }}
{{- else if .Values.watchNamespaces }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: In
      values: {{ toJson .Values.watchNamespaces }}
{{- else }}
namespaceSelector: {}
{{- end }}
{{- end }}

{{/* The info ConfigMap's name, and its namespace when fixed ("" = the target namespace). */}}
{{- define "ato.infoConfigMapName" -}}
{{- $v := default "armada-info" .Values.operator.infoConfigMap }}
{{- if contains "/" $v }}{{ last (splitList "/" $v) }}{{ else }}{{ $v }}{{ end }}
{{- end }}

{{- define "ato.infoConfigMapNamespace" -}}
{{- $v := default "armada-info" .Values.operator.infoConfigMap }}
{{- if contains "/" $v }}{{ first (splitList "/" $v) }}{{ end }}
{{- end }}

{{/*
What the operator does in the namespaces it watches. Keep in step with the chart README's
table and with the code: tests/chart.rs runs the operator with exactly these rules.
*/}}
{{- define "ato.watchRules" -}}
- apiGroups: [triage.dev]
  resources: [alerttriages]
  verbs: [get, list, watch]
- apiGroups: [triage.dev]
  resources: [alerttriages/status]
  verbs: [patch]
- apiGroups: [triage.dev]
  resources: [runbooks]
  verbs: [get, list, watch]
- apiGroups: [triage.dev]
  resources: [runbooks/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [pods]
  verbs: {{ if .Values.operator.allowPodDelete }}[get, list, delete]{{ else }}[get, list]{{ end }}
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [list]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Right before acting: may the approver evict that pod? (a namespaced review, so the same
# rule works in namespaced mode)
- apiGroups: [authorization.k8s.io]
  resources: [localsubjectaccessreviews]
  verbs: [create]
{{- if .Values.intake.enabled }}
# The Alertmanager intake creates triages (never updates them); retention deletes the resolved
# ones it created.
- apiGroups: [triage.dev]
  resources: [alerttriages]
  verbs: {{ if include "ato.intakeRetains" . }}[create]{{ else }}[create, delete]{{ end }}
{{- end }}
{{- if not (include "ato.infoConfigMapNamespace" .) }}
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ include "ato.infoConfigMapName" . | quote }}]
  verbs: [get]
{{- end }}
{{- end }}

{{/* A Go duration such as "1m30s" or "500ms", in milliseconds (a float). */}}
{{- define "ato.durationMs" -}}
{{- $units := dict "ns" 0.000001 "us" 0.001 "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 }}
{{- $total := 0.0 }}
{{- range regexFindAll `[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)` . -1 }}
{{- $number := regexFind `^[0-9]+(\.[0-9]+)?` . | float64 }}
{{- $unit := regexReplaceAll `^[0-9]+(\.[0-9]+)?` . "" }}
{{- $total = addf $total (mulf $number (get $units $unit)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
Values that pass the schema one by one but cannot work together: refused at `helm template` and
`helm install`, rather than an operator that exits at start or an alert that can never fire.
*/}}
{{- define "ato.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if $le.enabled }}
{{- $lease := include "ato.durationMs" $le.leaseDuration | float64 }}
{{- $renew := include "ato.durationMs" $le.renewDeadline | float64 }}
{{- $retry := include "ato.durationMs" $le.retryPeriod | float64 }}
{{- if not (and (lt $retry $renew) (lt $renew $lease)) }}
{{- fail (printf "leaderElection needs retryPeriod < renewDeadline < leaseDuration, got %s, %s and %s: a leader must stop acting (renewDeadline) before a follower may take over (leaseDuration), retrying every retryPeriod in between" $le.retryPeriod $le.renewDeadline $le.leaseDuration) }}
{{- end }}
{{- if lt $lease 1000.0 }}
{{- fail (printf "leaderElection.leaseDuration %s is under 1s: a Lease counts its duration in whole seconds" $le.leaseDuration) }}
{{- end }}
{{- end }}
{{- $rule := .Values.metrics.prometheusRule }}
{{- if $rule.enabled }}
{{- $ttl := include "ato.durationMs" .Values.operator.proposalTTL | float64 }}
{{- if ge (include "ato.durationMs" $rule.proposalWaiting | float64) $ttl }}
{{- fail (printf "metrics.prometheusRule.proposalWaiting (%s) must be shorter than operator.proposalTTL (%s): a proposal expires before the alert could fire" $rule.proposalWaiting .Values.operator.proposalTTL) }}
{{- end }}
{{- end }}
{{- end }}

{{/* What every container of the `helm test` hook shares; the argument is its securityContext. */}}
{{- define "ato.testContainer" -}}
env:
  - name: HOME
    value: /home/test
volumeMounts:
  - name: home
    mountPath: /home/test
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}

{{/* Non-empty when the intake keeps resolved triages forever (resolvedRetention 0). */}}
{{- define "ato.intakeRetains" -}}
{{- if regexMatch "^0+([.]0+)?(ns|us|ms|s|m|h)?$" (toString .Values.intake.resolvedRetention) }}true{{ end }}
{{- end }}
