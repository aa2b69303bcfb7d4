{{- define "hami-rs.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hami-rs.labels" -}}
app.kubernetes.io/name: hami-rs
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "hami-rs.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
