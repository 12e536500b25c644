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
{{/* webConfig: one projected volume holds web-config.yml and, under tls/, the tlsSecret files.
     One mount rather than a Secret volume nested inside another: nested mounts in read-only
     Secret volumes fail on some runtimes (e.g. Kata), and a projected volume still follows
     Secret updates. */}}
{{- define "mixpeek-exporter.webDir" -}}/etc/mixpeek-exporter/web{{- end }}

{{- define "mixpeek-exporter.webSecretName" -}}
{{- printf "%s-web-config" (include "mixpeek-exporter.fullname" .) }}
{{- end }}

{{/* web-config.yml as the chart writes it from webConfig.config (empty with existingSecret: the
     chart never sees that file). With tlsSecret, cert_file and key_file default to its files. */}}
{{- define "mixpeek-exporter.webConfigFile" -}}
{{- $wc := .Values.webConfig }}
{{- if not $wc.existingSecret }}
{{- $cfg := deepCopy ($wc.config | default dict) }}
{{- if $wc.tlsSecret }}
{{- $dir := printf "%s/tls" (include "mixpeek-exporter.webDir" .) }}
{{- $tls := deepCopy (get $cfg "tls_server_config" | default dict) }}
{{- $_ := set $tls "cert_file" (get $tls "cert_file" | default (printf "%s/tls.crt" $dir)) }}
{{- $_ := set $tls "key_file" (get $tls "key_file" | default (printf "%s/tls.key" $dir)) }}
{{- $_ := set $cfg "tls_server_config" $tls }}
{{- end }}
{{- if $cfg }}
{{- toYaml $cfg }}
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when the exporter serves HTTPS: webConfig.tls for an existing Secret (the chart cannot
     read it), else whether the rendered web-config.yml has tls_server_config. */}}
{{- define "mixpeek-exporter.webTLS" -}}
{{- $wc := .Values.webConfig }}
{{- if $wc.enabled }}
{{- if $wc.existingSecret }}
{{- if $wc.tls }}true{{ end }}
{{- else if dig "tls_server_config" dict (include "mixpeek-exporter.webConfigFile" . | fromYaml) }}true
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when a client certificate is required: no kubelet probe can then speak HTTP(S). */}}
{{- define "mixpeek-exporter.webClientCert" -}}
{{- $wc := .Values.webConfig }}
{{- if $wc.enabled }}
{{- $cfg := include "mixpeek-exporter.webConfigFile" . | fromYaml }}
{{- if or $wc.clientCertRequired (eq (dig "tls_server_config" "client_auth_type" "" $cfg) "RequireAndVerifyClientCert") }}true{{ end }}
{{- end }}
{{- end }}

{{/* "true" when every endpoint but /healthz may refuse a request without credentials (basic
     auth) or under load (rate_limit): always with an existing Secret, whose content is unknown. */}}
{{- define "mixpeek-exporter.webAuth" -}}
{{- $wc := .Values.webConfig }}
{{- if $wc.enabled }}
{{- $cfg := include "mixpeek-exporter.webConfigFile" . | fromYaml }}
{{- if or $wc.existingSecret (dig "basic_auth_users" dict $cfg) (dig "rate_limit" dict $cfg) }}true{{ end }}
{{- end }}
{{- end }}

{{/* A probe from values, adapted to webConfig: (dict "ctx" $ "probe" .Values.xProbe "readiness" bool).
     kubelet probes cannot send credentials without writing them into the pod spec, so a readiness
     probe that might meet basic auth goes to /healthz (always open); with required client
     certificates no HTTP probe can get through the handshake, so it checks the port instead. */}}
{{- define "mixpeek-exporter.probe" -}}
{{- $p := deepCopy .probe }}
{{- $ctx := .ctx }}
{{- if and $ctx.Values.webConfig.enabled $p.httpGet }}
{{- if include "mixpeek-exporter.webClientCert" $ctx }}
{{- $_ := set $p "tcpSocket" (dict "port" $p.httpGet.port) }}
{{- $_ := unset $p "httpGet" }}
{{- else }}
{{- if include "mixpeek-exporter.webTLS" $ctx }}
{{- $_ := set $p.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- if and .readiness (include "mixpeek-exporter.webAuth" $ctx) }}
{{- $_ := set $p.httpGet "path" "/healthz" }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $p }}
{{- end }}

{{/* Refuse values that cannot give a working exporter, with a message that says what to set.
     Called from the Deployment so that every render (install, upgrade, template, lint) checks. */}}
{{- define "mixpeek-exporter.validate" -}}
{{- if not .Values.demo.enabled }}
{{- if and (not .Values.apiKey.value) (not .Values.apiKey.existingSecret) }}
{{- fail "mixpeek-exporter: no API key. Set apiKey.existingSecret (a Secret you manage, key apiKey.existingSecretKey) or apiKey.value (the chart creates the Secret). To try the chart without a Mixpeek account, set demo.enabled=true." }}
{{- end }}
{{- end }}
{{- $wc := .Values.webConfig }}
{{- if $wc.enabled }}
{{- if and $wc.existingSecret $wc.config }}
{{- fail "mixpeek-exporter: set webConfig.existingSecret or webConfig.config, not both (only one web-config.yml can be mounted)." }}
{{- end }}
{{- $cfg := include "mixpeek-exporter.webConfigFile" . | fromYaml }}
{{- if and (not $wc.existingSecret) (not $cfg) }}
{{- fail "mixpeek-exporter: webConfig.enabled needs webConfig.existingSecret (a Secret with web-config.yml), webConfig.config (the web-config.yml content) or webConfig.tlsSecret (a kubernetes.io/tls Secret)." }}
{{- end }}
{{- if not $wc.existingSecret }}
{{- $tls := dig "tls_server_config" dict $cfg }}
{{- if and $wc.tls (not $tls) }}
{{- fail "mixpeek-exporter: webConfig.tls is true, but webConfig.config has no tls_server_config and webConfig.tlsSecret is empty: the probes would speak HTTPS to a plain HTTP server. Add one of them, or set webConfig.tls=false." }}
{{- end }}
{{- if and $tls (or (not $tls.cert_file) (not $tls.key_file)) }}
{{- fail "mixpeek-exporter: webConfig.config.tls_server_config needs cert_file and key_file, or set webConfig.tlsSecret (its tls.crt and tls.key are then used)." }}
{{- end }}
{{- range $user, $hash := dig "basic_auth_users" dict $cfg }}
{{- if not (regexMatch `^\$2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{53}$` (toString $hash | trim)) }}
{{- /* Never print the value: it may be a plaintext password pasted by mistake. */}}
{{- fail (printf "mixpeek-exporter: webConfig.config.basic_auth_users.%s is not a bcrypt hash (the value is not shown). Create one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'. Plaintext passwords are refused." $user) }}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.extraArgs }}
{{- if hasPrefix "--web.config.file" . }}
{{- fail "mixpeek-exporter: do not pass --web.config.file in extraArgs: webConfig sets it." }}
{{- end }}
{{- end }}
{{- else if or $wc.existingSecret $wc.config $wc.tlsSecret $wc.tls $wc.clientCertRequired }}
{{- fail "mixpeek-exporter: webConfig settings are present but webConfig.enabled is false, so the endpoints would be neither encrypted nor protected. Set webConfig.enabled=true, or remove webConfig.existingSecret/config/tlsSecret/tls/clientCertRequired." }}
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
{{- $discovery := deepCopy .Values.discovery }}
{{- /* Zero-config, like the exporter without a config file: no namespaces means all of them. */}}
{{- if not .Values.namespaces }}
{{- $_ := set $discovery "enabled" true }}
{{- end }}
{{- $cfg := dict "mixpeek" $mixpeek "poll" .Values.poll "discovery" $discovery "namespaces" .Values.namespaces }}
{{- toYaml $cfg }}
{{- end }}
