{{/*
Names. The objects the operator finds by name are fixed (the operator's defaults):
  Service aidp-opa, ConfigMap aidp-opa-bundle, Secrets aidp-webhook-tls and aidp-webhook-ca-key,
  Lease aidp-operator, ValidatingWebhookConfiguration aidp-validating-webhook.
Everything else is prefixed with the full name. One release per cluster: the webhook is cluster-wide.
*/}}
{{- define "aidp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aidp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "aidp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aidp.opaService" -}}aidp-opa{{- end -}}
{{- define "aidp.bundleConfigMap" -}}aidp-opa-bundle{{- end -}}
{{- /* the durable copy's head and its 16 shards (aidp/bundle.py: SHARDS), as a YAML flow list */ -}}
{{- define "aidp.bundleConfigMaps" -}}
{{- $base := include "aidp.bundleConfigMap" . -}}
[{{ $base }}{{ range $i := until 16 }}, {{ printf "%s-%02d" $base $i }}{{ end }}]
{{- end -}}
{{- define "aidp.tlsSecret" -}}aidp-webhook-tls{{- end -}}
{{- /* the webhook CA and its key: only the operator reads it (not in cert-manager mode) */ -}}
{{- define "aidp.caSecret" -}}aidp-webhook-ca-key{{- end -}}
{{- define "aidp.lease" -}}aidp-operator{{- end -}}
{{- define "aidp.webhookName" -}}aidp-validating-webhook{{- end -}}

{{- define "aidp.operatorName" -}}{{ include "aidp.fullname" . }}-operator{{- end -}}
{{- define "aidp.opaName" -}}{{ include "aidp.fullname" . }}-opa{{- end -}}

{{- define "aidp.opaTokenSecret" -}}
{{- default (printf "%s-opa-token" (include "aidp.fullname" .)) .Values.opa.token.existingSecret -}}
{{- end -}}

{{/* Recommended labels, on every object. */}}
{{- define "aidp.labels" -}}
helm.sh/chart: {{ include "aidp.chart" . }}
app.kubernetes.io/name: {{ include "aidp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aidp
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: call with (dict "ctx" $ "component" "operator"). */}}
{{- define "aidp.componentLabels" -}}
{{ include "aidp.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Selector labels (immutable in a Deployment: never add the version here). */}}
{{- define "aidp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aidp.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "aidp.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "aidp.opaImage" -}}
{{- if .Values.opa.image.digest -}}
{{- printf "%s:%s@%s" .Values.opa.image.repository .Values.opa.image.tag .Values.opa.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.opa.image.repository .Values.opa.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Every namespace the webhook never applies to, sorted as the operator renders them. */}}
{{- define "aidp.excludedNamespaces" -}}
{{- $all := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- range .Values.webhook.excludedNamespaces -}}
{{- $all = append $all . -}}
{{- end -}}
{{- toJson ($all | uniq | sortAlpha) -}}
{{- end -}}

{{/* Pod security: the restricted Pod Security profile. */}}
{{- define "aidp.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurityContext.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext.fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "aidp.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A preferred anti-affinity that spreads a component's replicas over nodes. */}}
{{- define "aidp.spreadAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "aidp.selectorLabels" . | nindent 12 }}
{{- end -}}
