{{/* The pod template shared by the Deployment and, with sharding, the StatefulSet. */}}
{{- define "mixpeek-exporter.podTemplate" -}}
metadata:
  labels:
    {{- include "mixpeek-exporter.labelsWith" (dict "ctx" . "extra" .Values.podLabels) | nindent 4 }}
  annotations:
    # A changed config or chart-managed key rolls the pod; no image rebuild is ever needed.
    checksum/config: {{ include "mixpeek-exporter.config" . | sha256sum }}
    {{- if and (not .Values.apiKey.existingSecret) .Values.apiKey.value }}
    checksum/secret: {{ .Values.apiKey.value | trim | sha256sum }}
    {{- end }}
    {{- if and .Values.webConfig.enabled (not .Values.webConfig.existingSecret) }}
    # The exporter re-reads web-config.yml by itself; rolling the pod as well makes a change
    # visible in the rollout history and catches a file the running exporter would refuse.
    checksum/web-config: {{ include "mixpeek-exporter.webConfigFile" . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "mixpeek-exporter.serviceAccountName" . }}
  # The exporter never calls the Kubernetes API.
  automountServiceAccountToken: false
  # No Service links: they would add one environment variable per Service in the namespace.
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: exporter
      image: {{ include "mixpeek-exporter.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- if .Values.demo.enabled }}
        - --demo
        {{- else }}
        - --config.file={{ include "mixpeek-exporter.configDir" . }}/config.yaml
        {{- end }}
        {{- if .Values.sharding.enabled }}
        # Each pod polls its share: the ordinal comes from the StatefulSet hostname (-N).
        - --shard=auto
        - --total-shards={{ .Values.sharding.shards }}
        {{- end }}
        - --web.listen-address=:10117
        - --log.level={{ .Values.log.level }}
        - --log.format={{ .Values.log.format }}
        {{- if .Values.webConfig.enabled }}
        - --web.config.file={{ include "mixpeek-exporter.webDir" . }}/web-config.yml
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- with .Values.extraEnv }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http-metrics
          containerPort: 10117
          protocol: TCP
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- include "mixpeek-exporter.probe" (dict "ctx" $ "probe" . "readiness" false) | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- include "mixpeek-exporter.probe" (dict "ctx" $ "probe" . "readiness" true) | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        # readOnlyRootFilesystem: Python's tempfile still gets a writable /tmp.
        - name: tmp
          mountPath: /tmp
        {{- if not .Values.demo.enabled }}
        - name: config
          mountPath: {{ include "mixpeek-exporter.configDir" . }}
          readOnly: true
        - name: api-key
          mountPath: {{ include "mixpeek-exporter.secretDir" . }}
          readOnly: true
        {{- if .Values.caBundle.configMap }}
        - name: ca-bundle
          mountPath: {{ include "mixpeek-exporter.caDir" . }}
          readOnly: true
        {{- end }}
        {{- end }}
        {{- if .Values.webConfig.enabled }}
        - name: web-config
          mountPath: {{ include "mixpeek-exporter.webDir" . }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
    {{- if not .Values.demo.enabled }}
    - name: config
      configMap:
        name: {{ include "mixpeek-exporter.fullname" . }}
    # Mounted as a directory (no subPath) so a rotated key reaches the pod without a restart.
    - name: api-key
      secret:
        secretName: {{ include "mixpeek-exporter.secretName" . }}
        defaultMode: 0440
        items:
          - key: {{ include "mixpeek-exporter.secretKey" . }}
            path: api-key
    {{- if .Values.caBundle.configMap }}
    - name: ca-bundle
      configMap:
        name: {{ .Values.caBundle.configMap }}
        items:
          - key: {{ .Values.caBundle.key }}
            path: {{ .Values.caBundle.key }}
    {{- end }}
    {{- end }}
    {{- with .Values.webConfig }}
    {{- if .enabled }}
    # web-config.yml (and the files it refers to) plus the tlsSecret files under tls/, in one
    # directory. No subPath: the kubelet refreshes the files and the exporter re-reads them.
    - name: web-config
      projected:
        defaultMode: 0440
        sources:
          {{- if .existingSecret }}
          - secret:
              name: {{ .existingSecret }}
          {{- else }}
          - secret:
              name: {{ include "mixpeek-exporter.webSecretName" $ }}
              items:
                - key: web-config.yml
                  path: web-config.yml
          {{- end }}
          {{- if .tlsSecret }}
          - secret:
              name: {{ .tlsSecret }}
              items:
                - key: tls.crt
                  path: tls/tls.crt
                - key: tls.key
                  path: tls/tls.key
          # ca.crt is there when cert-manager (or you) put it there; optional covers a missing key.
          - secret:
              name: {{ .tlsSecret }}
              optional: true
              items:
                - key: ca.crt
                  path: tls/ca.crt
          {{- end }}
    {{- end }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
