{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "ipp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name already holds it. */}}
{{- define "ipp-operator.fullname" -}}
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

{{- define "ipp-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the chart, except the component. */}}
{{- define "ipp-operator.baseLabels" -}}
helm.sh/chart: {{ include "ipp-operator.chart" . }}
app.kubernetes.io/name: {{ include "ipp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ipp-operator
{{- end }}

{{/* Labels on the operator's objects. */}}
{{- define "ipp-operator.labels" -}}
{{ include "ipp-operator.baseLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "ipp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ipp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ipp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ipp-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ipp-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when leader election is on: asked for, or more than one replica. */}}
{{- define "ipp-operator.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{- define "ipp-operator.leaseName" -}}
{{- default (include "ipp-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "ipp-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.leaseNamespace }}
{{- end }}

{{- define "ipp-operator.dashboardNamespace" -}}
{{- default .Release.Namespace .Values.grafana.dashboards.namespace }}
{{- end }}

{{/*
  How the per-EngineCluster controller Services look (src/backends/mpi/core/names.ts): the labels
  that select them, the name of their metrics port (/metrics), and the Service label naming the
  EngineCluster, as Prometheus' Kubernetes discovery spells it.
*/}}
{{- define "ipp-operator.controllerServiceLabels" -}}
app.kubernetes.io/component: controller
app.kubernetes.io/managed-by: ipp-operator
{{- end }}

{{- define "ipp-operator.controllerMetricsPort" -}}
metrics
{{- end }}

{{/* A matchLabels map as the operator's selector flags take it: k=v,k=v (keys sorted). */}}
{{- define "ipp-operator.selectorArg" -}}
{{- $parts := list }}
{{- range $k, $v := . }}
{{- $parts = append $parts (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $parts }}
{{- end }}

{{- define "ipp-operator.controllerClusterMetaLabel" -}}
__meta_kubernetes_service_label_ipp_dev_cluster
{{- end }}
