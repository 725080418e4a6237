{{/* Names and labels. Object names are <name>-mic and <name>-nmi, as upstream's chart. */}}
{{- define "podid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 59 | trimSuffix "-" -}}
{{- end -}}

{{- define "podid.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 59 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 59 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 59 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "podid.mic.fullname" -}}{{ include "podid.name" . }}-mic{{- end -}}
{{- define "podid.nmi.fullname" -}}{{ include "podid.name" . }}-nmi{{- end -}}

{{- define "podid.selectors" -}}
app.kubernetes.io/name: {{ include "podid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "podid.labels" -}}
{{ include "podid.selectors" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "podid.image" -}}
{{ .root.Values.image.repository }}/{{ .image }}:{{ .tag }}
{{- end -}}

{{/* Refusals of values podid cannot honour, each naming the fix. */}}
{{- define "podid.validate" -}}
{{- if not (has .Values.operationMode (list "standard" "managed")) -}}
{{- fail (printf "operationMode must be \"standard\" or \"managed\", not %q" .Values.operationMode) -}}
{{- end -}}
{{- if .Values.rbac.pspEnabled -}}
{{- fail "rbac.pspEnabled: PodSecurityPolicy was removed in Kubernetes 1.25; set it to false (use Pod Security Admission instead)" -}}
{{- end -}}
{{- end -}}
