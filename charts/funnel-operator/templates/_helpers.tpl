{{/*
The chart renders the objects of the repository's kustomize configuration, copied into
files/ by `make manifests` (never edit files/), and applies the values on top of them.
*/}}

{{/* Labels Helm adds to every object, besides the ones config/ gives it. */}}
{{- define "funnel-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
The objects of one file under files/ as a YAML list, with the namespace config/ installs
into (funnel-system) replaced by the release's wherever it appears: metadata, binding
subjects, and user names such as system:serviceaccount:funnel-system:funnel-operator.
Use: include "funnel-operator.objects" (list $ "files/default.yaml") | fromYamlArray
*/}}
{{- define "funnel-operator.objects" -}}
{{- $root := index . 0 -}}
{{- $text := $root.Files.Get (index . 1) | replace "funnel-system" $root.Release.Namespace -}}
{{- $objs := list -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" $text -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if $obj.kind -}}
{{- $objs = append $objs $obj -}}
{{- end -}}
{{- end -}}
{{- toYaml $objs -}}
{{- end }}

{{/* Prints an object with the chart's labels added. Use: include "funnel-operator.print" (list $ $obj) */}}
{{- define "funnel-operator.print" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- $labels := merge (dict) (include "funnel-operator.labels" $root | fromYaml) ($obj.metadata.labels | default dict) -}}
{{- $_ := set $obj.metadata "labels" $labels }}
---
{{ toYaml $obj }}
{{- end }}

{{/* The manager's flags from .Values.flags and .Values.extraArgs, as a YAML list. */}}
{{- define "funnel-operator.flags" -}}
{{- $f := .Values.flags -}}
{{- $args := list -}}
{{- with $f.externalURL }}{{ $args = append $args (printf "--external-url=%s" .) }}{{ end -}}
{{- with $f.namespaces }}{{ $args = append $args (printf "--namespaces=%s" (join "," .)) }}{{ end -}}
{{- with $f.eventConcurrency }}{{ $args = append $args (printf "--event-concurrency=%s" .) }}{{ end -}}
{{- with $f.webhookMaxInFlight }}{{ $args = append $args (printf "--webhook-max-in-flight=%v" .) }}{{ end -}}
{{- with $f.kubeAPIQPS }}{{ $args = append $args (printf "--kube-api-qps=%v" .) }}{{ end -}}
{{- with $f.kubeAPIBurst }}{{ $args = append $args (printf "--kube-api-burst=%v" .) }}{{ end -}}
{{- with $f.retentionDeletesPerSecond }}{{ $args = append $args (printf "--retention-deletes-per-second=%v" .) }}{{ end -}}
{{- with $f.gracefulShutdownTimeout }}{{ $args = append $args (printf "--graceful-shutdown-timeout=%s" .) }}{{ end -}}
{{- with $f.logLevel }}{{ $args = append $args (printf "--zap-log-level=%s" .) }}{{ end -}}
{{- if $f.allowInsecureReceivers }}{{ $args = append $args "--allow-insecure-receivers" }}{{ end -}}
{{- with $f.defaultServiceAccount }}{{ $args = append $args (printf "--default-service-account=%s" .) }}{{ end -}}
{{- with $f.deliveryAllowCIDRs }}{{ $args = append $args (printf "--delivery-allow-cidrs=%s" (join "," .)) }}{{ end -}}
{{- toYaml (concat $args .Values.extraArgs) -}}
{{- end }}

{{/* Applies the values to the manager Deployment. Use: include "funnel-operator.deployment" (list $ $obj) */}}
{{- define "funnel-operator.deployment" -}}
{{- $v := (index . 0).Values -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- $_ := set $obj.spec "replicas" (int $v.replicas) -}}
{{- $pod := $obj.spec.template -}}
{{- with $v.podAnnotations }}{{ $_ := set $pod.metadata "annotations" (merge (deepCopy .) ($pod.metadata.annotations | default dict)) }}{{ end -}}
{{- with $v.podLabels }}{{ $_ := set $pod.metadata "labels" (merge (deepCopy $pod.metadata.labels) .) }}{{ end -}}
{{- $spec := $pod.spec -}}
{{- with $v.imagePullSecrets }}{{ $_ := set $spec "imagePullSecrets" . }}{{ end -}}
{{- with $v.nodeSelector }}{{ $_ := set $spec "nodeSelector" . }}{{ end -}}
{{- with $v.tolerations }}{{ $_ := set $spec "tolerations" . }}{{ end -}}
{{- with $v.affinity }}{{ $_ := set $spec "affinity" . }}{{ end -}}
{{- with $v.priorityClassName }}{{ $_ := set $spec "priorityClassName" . }}{{ end -}}
{{- range $c := $spec.containers -}}
{{- if eq $c.name "manager" -}}
{{- $_ := set $c "image" (printf "%s:%s" $v.image.repository ($v.image.tag | default $root.Chart.AppVersion)) -}}
{{- with $v.image.pullPolicy }}{{ $_ := set $c "imagePullPolicy" . }}{{ end -}}
{{- with $v.resources }}{{ $_ := set $c "resources" . }}{{ end -}}
{{- $_ := set $c "args" (concat $c.args (include "funnel-operator.flags" $root | fromYamlArray)) -}}
{{- with $v.extraEnv }}{{ $_ := set $c "env" (concat ($c.env | default list) .) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- end }}
