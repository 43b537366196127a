{{/*
carbonaware.name is the chart name, or nameOverride.
*/}}
{{- define "carbonaware.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
carbonaware.fullname is the name of the release's resources: fullnameOverride, else the release
name when it already contains the chart name, else "<release>-<chart>"; at most 63 characters.
*/}}
{{- define "carbonaware.fullname" -}}
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

{{/*
carbonaware.chart is "<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "carbonaware.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
carbonaware.selectorLabels select the operator pods; they never change after install.
*/}}
{{- define "carbonaware.selectorLabels" -}}
app.kubernetes.io/name: {{ include "carbonaware.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
carbonaware.labels go on every resource of the release.
*/}}
{{- define "carbonaware.labels" -}}
helm.sh/chart: {{ include "carbonaware.chart" . }}
{{ include "carbonaware.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: carbon-aware-operator
{{- end }}

{{/*
carbonaware.serviceAccountName is the ServiceAccount the operator runs as.
*/}}
{{- define "carbonaware.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "carbonaware.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
carbonaware.image is the operator image reference.
*/}}
{{- define "carbonaware.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
carbonaware.runnerImage is the SSH runner image: ssh.runnerImage, else the operator image.
*/}}
{{- define "carbonaware.runnerImage" -}}
{{- default (include "carbonaware.image" .) .Values.ssh.runnerImage }}
{{- end }}

{{/*
carbonaware.namespaced is "true" when the operator serves only the release namespace.
*/}}
{{- define "carbonaware.namespaced" -}}
{{- if eq .Values.watchScope "ReleaseNamespace" }}true{{ end }}
{{- end }}

{{/*
carbonaware.peered is "true" when several replicas elect one active operator via kopf peering.
*/}}
{{- define "carbonaware.peered" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/*
carbonaware.peeringName is the kopf peering object the replicas share.
*/}}
{{- define "carbonaware.peeringName" -}}
{{- include "carbonaware.fullname" . }}
{{- end }}

{{/*
carbonaware.settingsEnv is the list of CARBONAWARE_* environment variables from the values: one
per setting that is set (not null, not empty), tokens from existing Secrets via secretKeyRef.
*/}}
{{- define "carbonaware.settingsEnv" -}}
{{- $v := .Values }}
{{- $p := $v.providers }}
{{- $settings := list
  (list "CARBONAWARE_TICK_SECONDS" $v.operator.tickSeconds)
  (list "CARBONAWARE_DEFAULT_REGION" $v.operator.defaultRegion)
  (list "CARBONAWARE_RELEASE_CAP_PER_TICK" $v.operator.releaseCapPerTick)
  (list "CARBONAWARE_FORECAST_BLEND" $v.operator.forecastBlend)
  (list "CARBONAWARE_PROVIDERS" (join "," $p.chain))
  (list "CARBONAWARE_PROVIDER_CACHE_TTL_SECONDS" $p.cacheTtlSeconds)
  (list "CARBONAWARE_PROVIDER_STALE_MAX_AGE_SECONDS" $p.staleMaxAgeSeconds)
  (list "CARBONAWARE_PROVIDER_TIMEOUT_SECONDS" $p.timeoutSeconds)
  (list "CARBONAWARE_PROVIDER_RETRIES" $p.retries)
  (list "CARBONAWARE_UKCI_BASE_URL" $p.ukci.baseUrl)
  (list "CARBONAWARE_ELECTRICITYMAPS_BASE_URL" $p.electricityMaps.baseUrl)
  (list "CARBONAWARE_WATTTIME_BASE_URL" $p.wattTime.baseUrl)
  (list "CARBONAWARE_WATTTIME_USERNAME" $p.wattTime.username)
  (list "CARBONAWARE_STATIC_INTENSITY" $p.static.intensity)
  (list "CARBONAWARE_STATIC_TABLE" (join "," $p.static.table))
  (list "CARBONAWARE_TRACE_PATH" $p.trace.path)
  (list "CARBONAWARE_TRACE_TIME_COLUMN" $p.trace.timeColumn)
  (list "CARBONAWARE_TRACE_ACTUAL_COLUMN" $p.trace.actualColumn)
  (list "CARBONAWARE_TRACE_FORECAST_COLUMN" $p.trace.forecastColumn)
  (list "CARBONAWARE_TRACE_INDEX_COLUMN" $p.trace.indexColumn)
  (list "CARBONAWARE_TRACE_SHIFT_TO_NOW" $p.trace.shiftToNow)
  (list "CARBONAWARE_TRACE_VINTAGES_PATH" $p.trace.vintagesPath)
  (list "CARBONAWARE_SSH_MODE" $v.ssh.mode)
  (list "CARBONAWARE_RUNNER_IMAGE" (include "carbonaware.runnerImage" .))
  (list "CARBONAWARE_RUNNER_IMAGE_PULL_POLICY" $v.ssh.runnerImagePullPolicy)
  (list "CARBONAWARE_RUNNER_NODE_SELECTOR" (ternary (toJson $v.ssh.runnerNodeSelector) "" (not (empty $v.ssh.runnerNodeSelector))))
  (list "CARBONAWARE_RUNNER_TOLERATIONS" (ternary (toJson $v.ssh.runnerTolerations) "" (not (empty $v.ssh.runnerTolerations))))
  (list "CARBONAWARE_SSH_PROBE_SECONDS" $v.ssh.probeSeconds)
  (list "CARBONAWARE_SSH_ALLOWED_HOSTS" (join "," $v.ssh.allowedHosts))
  (list "CARBONAWARE_PROMETHEUS_URL" $v.measurement.prometheusUrl)
  (list "CARBONAWARE_PUE" $v.measurement.pue)
  (list "CARBONAWARE_BOAVIZTA_URL" (include "carbonaware.boaviztaUrl" .))
}}
{{- $secrets := list
  (list "CARBONAWARE_ELECTRICITYMAPS_TOKEN" $p.electricityMaps.tokenSecretRef)
  (list "CARBONAWARE_WATTTIME_PASSWORD" $p.wattTime.passwordSecretRef)
}}
{{- $env := list }}
{{- range $settings }}
{{- $value := index . 1 }}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
{{- $env = append $env (dict "name" (index . 0) "value" (toString $value)) }}
{{- end }}
{{- end }}
{{- range $secrets }}
{{- $ref := index . 1 }}
{{- if $ref.name }}
{{- $env = append $env (dict "name" (index . 0) "valueFrom" (dict "secretKeyRef" (dict "name" $ref.name "key" $ref.key))) }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
carbonaware.boaviztaUrl is the BoaviztAPI the operator asks: the one the chart deploys, else
boavizta.url (empty: none).
*/}}
{{- define "carbonaware.boaviztaUrl" -}}
{{- if .Values.boavizta.enabled -}}
http://{{ include "carbonaware.fullname" . }}-boavizta.{{ .Release.Namespace }}.svc:{{ .Values.boavizta.port }}
{{- else -}}
{{ .Values.boavizta.url }}
{{- end -}}
{{- end }}

{{/*
carbonaware.boaviztaSelectorLabels select the BoaviztAPI pods; a name of their own keeps them
out of the operator's Service.
*/}}
{{- define "carbonaware.boaviztaSelectorLabels" -}}
app.kubernetes.io/name: boaviztapi
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "carbonaware.boaviztaLabels" -}}
helm.sh/chart: {{ include "carbonaware.chart" . }}
{{ include "carbonaware.boaviztaSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.boavizta.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: carbon-aware-operator
app.kubernetes.io/component: boaviztapi
{{- end }}

{{/*
carbonaware.webhookSecretName is the kubernetes.io/tls Secret of the admission webhook's
serving certificate (tls.crt, tls.key) and the CA the webhook configuration trusts (ca.crt).
*/}}
{{- define "carbonaware.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "carbonaware.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
carbonaware.webhookTLS is the webhook's certificate as JSON {ca, crt, key} (base64 PEM): the
release's Secret when it already holds one (upgrades keep it), else a new CA and a serving
certificate for the Service's DNS names, valid webhook.certificateDays. Computed once per render,
so the Secret and the webhook configuration always agree. To rotate, delete the Secret and
upgrade the release: the operator re-reads the mounted files without a restart.
*/}}
{{- define "carbonaware.webhookTLS" -}}
{{- if not (hasKey .Values "renderedWebhookTLS") }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "carbonaware.webhookSecretName" .) }}
{{- $data := (get (default dict $existing) "data") | default dict }}
{{- $tls := dict }}
{{- if and (get $data "ca.crt") (get $data "tls.crt") (get $data "tls.key") }}
{{- $_ := set $tls "ca" (get $data "ca.crt") }}
{{- $_ := set $tls "crt" (get $data "tls.crt") }}
{{- $_ := set $tls "key" (get $data "tls.key") }}
{{- else }}
{{- $service := include "carbonaware.fullname" . }}
{{- $host := printf "%s.%s.svc" $service .Release.Namespace }}
{{- $names := list $service (printf "%s.%s" $service .Release.Namespace) $host }}
{{- $days := int .Values.webhook.certificateDays }}
{{- $ca := genCA (printf "%s-webhook-ca" $service) $days }}
{{- $cert := genSignedCert $host nil $names $days $ca }}
{{- $_ := set $tls "ca" ($ca.Cert | b64enc) }}
{{- $_ := set $tls "crt" ($cert.Cert | b64enc) }}
{{- $_ := set $tls "key" ($cert.Key | b64enc) }}
{{- end }}
{{- $_ := set .Values "renderedWebhookTLS" $tls }}
{{- end }}
{{- toJson .Values.renderedWebhookTLS }}
{{- end }}
