{{/* Names and labels shared by every template. Object names are fixed (placement-webhook,
placement-operator, ...) so that the docs, alerts and dashboards name the same objects whatever the
release is called; install the chart once per cluster. */}}

{{- define "placement.labels" -}}
app.kubernetes.io/part-of: placement
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "placement.webhook.labels" -}}
{{ include "placement.labels" . }}
app.kubernetes.io/name: placement-webhook
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "placement.operator.labels" -}}
{{ include "placement.labels" . }}
app.kubernetes.io/name: placement-operator
app.kubernetes.io/component: operator
{{- end -}}

{{- define "placement.image" -}}
{{- $c := index . 0 -}}{{- $root := index . 1 -}}
{{ printf "%s/%s:%s" $root.Values.imageRegistry $c.image.repository (default $root.Chart.AppVersion $c.image.tag) }}
{{- end -}}

{{/* The locked-down container security context both components use. */}}
{{- define "placement.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Spread over hosts (preferred) and zones (best effort) for a component. */}}
{{- define "placement.spread" -}}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: {{ . }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        app.kubernetes.io/name: {{ . }}
    matchLabelKeys: [pod-template-hash]
{{- end -}}

{{/* The three probes on the `probes` port. */}}
{{- define "placement.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: probes}
  periodSeconds: 2
  failureThreshold: 30
  timeoutSeconds: 2
livenessProbe:
  httpGet: {path: /healthz, port: probes}
  periodSeconds: 10
  failureThreshold: 3
  timeoutSeconds: 2
readinessProbe:
  httpGet: {path: /readyz, port: probes}
  periodSeconds: 5
  failureThreshold: 2
  timeoutSeconds: 2
{{- end -}}

{{/* The pod of the self-signed certificate Job and CronJob. */}}
{{- define "placement.webhook.certsPod" -}}
{{- $w := .Values.webhook -}}
serviceAccountName: placement-webhook-certs
restartPolicy: OnFailure
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile: {type: RuntimeDefault}
containers:
  - name: certs
    image: {{ include "placement.image" (list $w .) }}
    imagePullPolicy: {{ $w.image.pullPolicy }}
    args: [certs]
    env:
      - {name: PLACEMENT_CERTS_NAMESPACE, value: {{ .Release.Namespace | quote }}}
      - {name: PLACEMENT_CERTS_SECRET, value: placement-webhook-tls}
      - {name: PLACEMENT_CERTS_WEBHOOK_CONFIG, value: placement-webhook}
      - {name: PLACEMENT_CERTS_SERVICE, value: placement-webhook}
      - {name: PLACEMENT_CERTS_VALIDITY_DAYS, value: {{ $w.certificates.durationDays | quote }}}
      - {name: PLACEMENT_CERTS_RENEW_BEFORE_DAYS, value: {{ $w.certificates.renewBeforeDays | quote }}}
    resources:
      requests: {cpu: 10m, memory: 32Mi}
      limits: {memory: 64Mi}
    securityContext: {{- include "placement.containerSecurityContext" . | nindent 6 }}
{{- end -}}
