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

{{/*
Auth:* and Authentication:Schemes:Bearer as environment variables: names, scopes and issuers as values, the API key
hashes and JWT signing keys from the Secrets that hold them.
*/}}
{{- define "jacservice.authEnv" -}}
{{- $auth := .Values.auth }}
{{- if not (kindIs "invalid" $auth.allowAnonymous) }}
- name: Auth__AllowAnonymous
  value: {{ $auth.allowAnonymous | toString | quote }}
{{- end }}
{{- if $auth.jwt.enabled }}
{{- if not (or $auth.jwt.authority $auth.jwt.signingKeys) }}
{{- fail "auth.jwt.enabled needs auth.jwt.authority (an OpenID Connect issuer) or auth.jwt.signingKeys (from auth.jwt.signingKeysSecret)" }}
{{- end }}
{{- range $i, $audience := required "auth.jwt.validAudiences is required when auth.jwt.enabled is true" $auth.jwt.validAudiences }}
- name: Authentication__Schemes__Bearer__ValidAudiences__{{ $i }}
  value: {{ $audience | quote }}
{{- end }}
{{- with $auth.jwt.authority }}
- name: Authentication__Schemes__Bearer__Authority
  value: {{ . | quote }}
{{- end }}
{{- with $auth.jwt.validIssuer }}
- name: Authentication__Schemes__Bearer__ValidIssuer
  value: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $auth.jwt.tokenCacheSeconds) }}
- name: Auth__TokenCacheSeconds
  value: {{ $auth.jwt.tokenCacheSeconds | toString | quote }}
{{- end }}
{{- range $i, $key := $auth.jwt.signingKeys }}
- name: Authentication__Schemes__Bearer__SigningKeys__{{ $i }}__Issuer
  value: {{ default $auth.jwt.validIssuer $key.issuer | quote }}
- name: Authentication__Schemes__Bearer__SigningKeys__{{ $i }}__Value
  valueFrom:
    secretKeyRef:
      name: {{ required "auth.jwt.signingKeysSecret is required when auth.jwt.signingKeys lists keys" $auth.jwt.signingKeysSecret }}
      key: {{ $key.secretKey }}
{{- end }}
{{- end }}
{{- range $i, $key := $auth.apiKeys.keys }}
- name: Auth__ApiKeys__{{ $i }}__Name
  value: {{ $key.name | quote }}
- name: Auth__ApiKeys__{{ $i }}__Hash
  valueFrom:
    secretKeyRef:
      name: {{ required "auth.apiKeys.existingSecret is required when auth.apiKeys.keys lists keys" $auth.apiKeys.existingSecret }}
      key: {{ default $key.name $key.secretKey }}
{{- range $j, $scope := $key.scopes }}
- name: Auth__ApiKeys__{{ $i }}__Scopes__{{ $j }}
  value: {{ $scope | quote }}
{{- end }}
{{- range $j, $role := $key.roles }}
- name: Auth__ApiKeys__{{ $i }}__Roles__{{ $j }}
  value: {{ $role | quote }}
{{- end }}
{{- end }}
{{- if $auth.certificate.enabled }}
{{- if not (and .Values.tls.enabled .Values.tls.mutual) }}
{{- fail "auth.certificate.enabled needs tls.enabled and tls.mutual: without mutual TLS no client certificate arrives" }}
{{- end }}
- name: Auth__Certificate__Enabled
  value: "true"
- name: Auth__Certificate__NameFrom
  value: {{ $auth.certificate.nameFrom | quote }}
{{- range $j, $scope := $auth.certificate.scopes }}
- name: Auth__Certificate__Scopes__{{ $j }}
  value: {{ $scope | quote }}
{{- end }}
{{- range $j, $role := $auth.certificate.roles }}
- name: Auth__Certificate__Roles__{{ $j }}
  value: {{ $role | quote }}
{{- end }}
{{- end }}
{{- range $group, $rule := $auth.groups }}
{{- if not (kindIs "invalid" $rule.anonymous) }}
- name: Auth__Groups__{{ $group }}__Anonymous
  value: {{ $rule.anonymous | toString | quote }}
{{- end }}
{{- range $j, $scope := $rule.scopes }}
- name: Auth__Groups__{{ $group }}__Scopes__{{ $j }}
  value: {{ $scope | quote }}
{{- end }}
{{- range $j, $role := $rule.roles }}
- name: Auth__Groups__{{ $group }}__Roles__{{ $j }}
  value: {{ $role | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Quotas:* as environment variables; only the limits that are set, so an unset anonymous limit falls back to the default. */}}
{{- define "jacservice.quotaEnv" -}}
{{- $quotas := .Values.quotas }}
{{- if $quotas.enabled }}
- name: Quotas__Enabled
  value: "true"
{{- include "jacservice.quotaLimits" (dict "prefix" "Quotas__Default" "limits" $quotas.default) }}
{{- include "jacservice.quotaLimits" (dict "prefix" "Quotas__Anonymous" "limits" $quotas.anonymous) }}
{{- range $name, $limits := $quotas.principals }}
{{- include "jacservice.quotaLimits" (dict "prefix" (printf "Quotas__Principals__%s" $name) "limits" $limits) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jacservice.quotaLimits" -}}
{{- $prefix := .prefix }}
{{- range $setting, $env := dict "requestsPerSecond" "RequestsPerSecond" "burst" "Burst" "concurrentRequests" "ConcurrentRequests" }}
{{- if hasKey $.limits $setting }}
- name: {{ $prefix }}__{{ $env }}
  value: {{ index $.limits $setting | int64 | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
