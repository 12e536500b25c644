{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "mixpeek-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the objects: <release>-<chart>, or <release> when it already has the chart name. */}}
{{- define "mixpeek-exporter.fullname" -}}
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

{{- define "mixpeek-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pod: they must never change between upgrades. */}}
{{- define "mixpeek-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mixpeek-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mixpeek-exporter.standardLabels" -}}
helm.sh/chart: {{ include "mixpeek-exporter.chart" . }}
{{ include "mixpeek-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mixpeek-exporter
{{- end }}

{{/* Labels of every object: the standard ones plus commonLabels. */}}
{{- define "mixpeek-exporter.labels" -}}
{{- include "mixpeek-exporter.labelsWith" (dict "ctx" . "extra" dict) }}
{{- end }}

{{/* The same plus an object's own extra labels: (dict "ctx" $ "extra" .Values.x.labels).
     Merged as maps, not concatenated, so a key set in two places is not emitted twice.
     Precedence: standard labels (selectors must stay intact) > extra > commonLabels. */}}
{{- define "mixpeek-exporter.labelsWith" -}}
{{- $std := include "mixpeek-exporter.standardLabels" .ctx | fromYaml }}
{{- toYaml (merge $std (deepCopy (.extra | default dict)) (deepCopy .ctx.Values.commonLabels)) }}
{{- end }}

{{- define "mixpeek-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mixpeek-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mixpeek-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Secret holding the API key: the user's existingSecret, or the one the chart creates. */}}
{{- define "mixpeek-exporter.secretName" -}}
{{- .Values.apiKey.existingSecret | default (include "mixpeek-exporter.fullname" .) }}
{{- end }}

{{- define "mixpeek-exporter.secretKey" -}}
{{- if .Values.apiKey.existingSecret }}{{ .Values.apiKey.existingSecretKey }}{{ else }}api-key{{ end }}
{{- end }}

{{/* Paths inside the container. The config and the key live in separate directories so that
     neither volume is mounted inside the other and both can be updated in place by the kubelet. */}}
{{- define "mixpeek-exporter.configDir" -}}/etc/mixpeek-exporter/config{{- end }}
{{- define "mixpeek-exporter.secretDir" -}}/etc/mixpeek-exporter/secret{{- end }}
{{- define "mixpeek-exporter.caDir" -}}/etc/mixpeek-exporter/ca{{- end }}

{{/* Refuse values that cannot give a working exporter, with a message that says what to set.
     Called from the Deployment so that every render (install, upgrade, template, lint) checks. */}}
{{- define "mixpeek-exporter.validate" -}}
{{- if not .Values.demo.enabled }}
{{- if and (not .Values.apiKey.value) (not .Values.apiKey.existingSecret) }}
{{- fail "mixpeek-exporter: no API key. Set apiKey.existingSecret (a Secret you manage, key apiKey.existingSecretKey) or apiKey.value (the chart creates the Secret). To try the chart without a Mixpeek account, set demo.enabled=true." }}
{{- end }}
{{- if and (not .Values.namespaces) (not .Values.discovery.enabled) }}
{{- fail "mixpeek-exporter: namespaces is empty. List at least one Mixpeek namespace name or ns_ id to poll, e.g. --set 'namespaces={my_namespace}', or set discovery.enabled=true." }}
{{- end }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- fail "mixpeek-exporter: enable serviceMonitor or podMonitor, not both (every sample would be scraped twice)." }}
{{- end }}
{{- end }}

{{/* The exporter's config file. Keys are the exporter's own; the chart adds the key file path. */}}
{{- define "mixpeek-exporter.config" -}}
{{- $mixpeek := deepCopy .Values.mixpeek }}
{{- $_ := set $mixpeek "api_key_file" (printf "%s/api-key" (include "mixpeek-exporter.secretDir" .)) }}
{{- if .Values.caBundle.configMap }}
{{- $_ := set $mixpeek "ca_file" (printf "%s/%s" (include "mixpeek-exporter.caDir" .) .Values.caBundle.key) }}
{{- end }}
{{- $cfg := dict "mixpeek" $mixpeek "poll" .Values.poll "discovery" .Values.discovery "namespaces" .Values.namespaces }}
{{- toYaml $cfg }}
{{- end }}
