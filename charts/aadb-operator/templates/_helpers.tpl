{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "aadb-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. The release name alone when it contains the chart name or
is a prefix of it (release `aadb` of chart `aadb-operator` gives `aadb-operator`), otherwise
`<release>-<chart>`.
*/}}
{{- define "aadb-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else if hasPrefix (printf "%s-" .Release.Name) $name }}
{{- $name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: name-version.
*/}}
{{- define "aadb-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object of the release carries.
*/}}
{{- define "aadb-operator.labels" -}}
helm.sh/chart: {{ include "aadb-operator.chart" . }}
{{ include "aadb-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: aadb
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the operator pods (stable across upgrades: never add to them).
*/}}
{{- define "aadb-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aadb-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "aadb-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aadb-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "aadb-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Refuses value combinations that would install an operator that cannot work.
*/}}
{{- define "aadb-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: replicas without leader election would reconcile the same databases at once" }}
{{- end }}
{{- if and .Values.rbac.create (not .Values.rbac.clusterScoped) (not .Values.watchNamespace) }}
{{- fail "rbac.clusterScoped=false needs watchNamespace: namespaced permissions only cover the one namespace the operator watches" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes the metrics Service" }}
{{- end }}
{{- end }}

{{/*
Rules on the objects of the databases the operator watches: the ActiveActiveDatabase objects
and the objects it creates for them. Shared by the ClusterRole and the namespaced Role.
*/}}
{{- define "aadb-operator.namespacedRules" -}}
# The databases: watch them, patch their finalizer and annotation, and their status. Owner
# references on their objects block the database's deletion, which needs update on
# activeactivedatabases/finalizers.
- apiGroups: ["aadb.dev"]
  resources: ["activeactivedatabases"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["aadb.dev"]
  resources: ["activeactivedatabases/status"]
  verbs: ["patch"]
- apiGroups: ["aadb.dev"]
  resources: ["activeactivedatabases/finalizers"]
  verbs: ["update"]
# What a database is made of: one StatefulSet per shard, a proxy Deployment per region,
# Services and PodDisruptionBudgets; each is read before it is server-side applied (create
# and patch), StatefulSets, Services and budgets are watched, and a database's objects are
# deleted by name or by label (deletecollection).
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete", "deletecollection"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "create", "patch", "delete", "deletecollection"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete", "deletecollection"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete", "deletecollection"]
# Pods are listed for health, their role label is patched on failover, and outdated pods are
# deleted one at a time to roll a change.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "patch", "delete"]
# Optional NetworkPolicies of a database (spec.networkPolicy).
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "deletecollection"]
# The shard-nodes' data volumes (claims of the StatefulSets) are deleted with the database.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "deletecollection"]
# Kubeconfigs of remote participants and the database's passwords, read by name; the
# passwords are generated (create) and copied into participant namespaces that do not hold
# the database (patch), and the copies deleted with it. Secrets are never listed or watched.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "deletecollection"]
# Events on each important transition.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Rule on namespaces, for an operator that watches every namespace: a participant may live in
another namespace, created when missing.
*/}}
{{- define "aadb-operator.namespaceRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "create"]
{{- end }}

{{/*
Rule on the leader-election Lease.
*/}}
{{- define "aadb-operator.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}

{{/*
Rules on cluster-scoped objects: node readiness and zones, and the start-up check that the
ActiveActiveDatabase CRD is installed.
*/}}
{{- define "aadb-operator.clusterRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["activeactivedatabases.aadb.dev"]
  verbs: ["get"]
{{- end }}
