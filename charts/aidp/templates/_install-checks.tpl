{{/*
What an installer must fix before aidp works, as text lines (empty when nothing). Rendered into
NOTES.txt (shown by helm install and helm upgrade) and, as YAML comments, into install-checks.yaml,
so that `helm template` (which prints no NOTES) shows the same warnings. See docs/install.md.
*/}}
{{- define "aidp.installWarnings" -}}
{{- $lines := list -}}
{{- if and (eq .Values.image.repository "aidp") (not .Values.image.digest) -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- $lines = append $lines (printf "WARNING: image aidp:%s is the chart's default, a local name that no registry publishes, so the\n  pods cannot pull it (ErrImagePull) unless you loaded it into every node yourself (kind load).\n  Build and push it, then set it (docs/install.md#1-the-image):\n    make image IMAGE=<registry>/aidp:%s && docker push <registry>/aidp:%s\n    --set image.repository=<registry>/aidp --set image.tag=%s" $tag $tag $tag $tag) -}}
{{- end -}}
{{- if gt (float64 .Values.audit.intervalSeconds) 0.0 -}}
{{- $crd := ternary "policyreports.wgpolicyk8s.io" "reports.openreports.io" (eq .Values.audit.reportKind "policyreport") -}}
{{- $file := ternary "wgpolicyk8s.io_policyreports.yaml" "openreports.io_reports.yaml" (eq .Values.audit.reportKind "policyreport") -}}
{{- $install := printf "kubectl apply --server-side -f deploy/crds/%s" $file -}}
{{- if not (lookup "v1" "Namespace" "" .Release.Namespace) -}}
{{- $lines = append $lines (printf "NOTE: the report CRD %s could not be checked (no cluster to look it up in:\n  helm template or --dry-run). The audit writes its reports as these objects; without the CRD it\n  writes none and counts an error every run. Install it once (docs/install.md#2-the-report-crd):\n    %s" $crd $install) -}}
{{- else if not (lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" $crd) -}}
{{- $lines = append $lines (printf "WARNING: the report CRD %s is missing: the audit writes no report and counts an error every\n  run (aidp_audit_errors_total) until it is installed (docs/install.md#2-the-report-crd):\n    %s" $crd $install) -}}
{{- end -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}
