{{- define "ftjob.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ftjob.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ftjob.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ftjob.serviceAccountName" -}}
{{- default (include "ftjob.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Namespaces the operator works in: every one ("cluster"), or the listed ones. */}}
{{- define "ftjob.watchedNamespaces" -}}
{{- if eq .Values.watch.mode "namespaces" -}}
{{- .Values.watch.namespaces | join "," -}}
{{- end -}}
{{- end -}}

{{/* What the operator may do to run FineTuneJobs: no wildcards, no Secrets. */}}
{{- define "ftjob.applicationRules" -}}
- apiGroups: [ftjob.dev]
  resources: [finetunejobs]
  verbs: [get, list, watch, delete]
- apiGroups: [ftjob.dev]
  resources: [finetunejobs/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [configmaps, services, serviceaccounts]
  verbs: [get, create]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Why a queued attempt waits, or was evicted: its Kueue Workload (read only; nothing is
# watched where Kueue is not installed).
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [list, watch]
{{- end -}}

{{/* What kopf itself needs: events, and peering when several replicas run. */}}
{{- define "ftjob.frameworkRules" -}}
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end -}}
