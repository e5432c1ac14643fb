{{- define "jacservice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jacservice.fullname" -}}
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

{{- define "jacservice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jacservice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jacservice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "jacservice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "jacservice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jacservice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jacservice.tlsDir" -}}
/var/run/secrets/jacservice/tls
{{- end }}

{{/*
The probe action: Kubernetes' native gRPC probe without TLS; with TLS, which the kubelet's gRPC probe cannot speak, the
image's health probe run in the container against its own loopback address, with the CA (and, for mutual TLS, the
pod's certificate) named in the container's environment.
*/}}
{{- define "jacservice.probe" -}}
{{- if .Values.tls.enabled -}}
exec:
  command: ["/app/probe/JacService.HealthProbe", "https://127.0.0.1:50051"]
{{- else -}}
grpc:
  port: 50051
{{- end }}
{{- end }}
