{{/*
RBAC rules, shared by clusterrole.yaml (watchScope Cluster) and role.yaml (watchScope
ReleaseNamespace). Each rule says why the operator needs it; nothing is granted that the
operator or kopf does not call. No wildcards.
*/}}

{{/*
carbonaware.rbac.namespacedRules: rules on namespaced resources.
*/}}
{{- define "carbonaware.rbac.namespacedRules" -}}
# CarbonAwareJobs: kopf lists and watches them and patches its own annotations onto them (the
# last handled spec, which tells a spec edit from a replay); the handlers read one by name when
# its Job or SSH run reports back. CarbonAwareCronJobs create one per period and delete the
# finished ones beyond their history limits (and an active one under concurrencyPolicy
# Replace).
- apiGroups: ["carbonaware.io"]
  resources: ["carbonawarejobs"]
  verbs: ["get", "list", "watch", "patch", "create", "delete"]
# CarbonAwareCronJobs: kopf lists and watches them to keep the operator's schedule of them
# (event handlers only: kopf never patches them).
- apiGroups: ["carbonaware.io"]
  resources: ["carbonawarecronjobs"]
  verbs: ["list", "watch"]
{{- if .Values.webhook.enabled }}
# CarbonAwarePolicies: the admission webhook lists a namespace's policies when a Job is created
# there (cached a few seconds), to find the one that governs it. Never written.
- apiGroups: ["carbonaware.io"]
  resources: ["carbonawarepolicies"]
  verbs: ["list"]
{{- end }}
# ServerTargets: kopf lists and watches them to keep the operator's registry of targets. kopf
# never patches them (event handlers only) and nothing reads one by name.
- apiGroups: ["carbonaware.io"]
  resources: ["servertargets"]
  verbs: ["list", "watch"]
# Status subresources: conditions, state, planned start, intensity and SCI of jobs, probe
# results of targets and the periods of cron jobs are merge-patched into status; status is
# never read or replaced on its own.
- apiGroups: ["carbonaware.io"]
  resources: ["carbonawarejobs/status", "servertargets/status", "carbonawarecronjobs/status"]
  verbs: ["patch"]
# Jobs: create the Job of a CarbonAwareJob (get: on a name conflict, read the existing Job to
# tell our own from a user's), watch Jobs to follow them, unsuspend managed plain Jobs at release
# and annotate Jobs with the SCI estimate. Owner references and garbage collection delete them,
# except when a person cancels a running CarbonAwareJob (annotation carbonaware.io/cancel):
# delete stops its child Job at once, with a UID precondition (only our own child).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods: create the SSH-runner pods and watch them for the outcome; list the pods of a finished
# Job to measure them and annotate them with the SCI. A runner pod whose name is taken is
# looked up through a list (by name), to tell our own from someone else's.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "patch"]
# Secrets: read the SSH private key a ServerTarget names, to probe the server and run scripts.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events: the operator and kopf post Events for every transition, so `kubectl describe` shows them.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Pod metrics: CPU usage of running Job pods, listed per namespace by label from metrics-server
# when no Prometheus is configured.
- apiGroups: ["metrics.k8s.io"]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}

{{/*
carbonaware.rbac.clusterRules: rules on cluster-scoped resources, granted in both scopes.
*/}}
{{- define "carbonaware.rbac.clusterRules" -}}
# Nodes: instance type, region and capacity of the node a run used (read by name), for the
# SCI estimate.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get"]
# CRDs: kopf watches them to start serving carbonaware.io kinds (and kopf's peering kinds)
# that appear or change after start-up.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
carbonaware.rbac.namespaceScanRules: kopf lists and watches namespaces only when it serves named
namespaces (watchScope ReleaseNamespace), to notice the served namespace being deleted or created.
*/}}
{{- define "carbonaware.rbac.namespaceScanRules" -}}
# Namespaces: kopf checks that the served namespace exists and follows its deletion and re-creation.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
carbonaware.rbac.clusterPeeringRules: kopf peering between replicas (replicaCount > 1, Cluster).
*/}}
{{- define "carbonaware.rbac.clusterPeeringRules" -}}
# Peering: each replica writes its priority and keep-alive into the release's peering object
# (kopf), and the refresh loop reads it once per tick to act only in the active replica.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  resourceNames: [{{ include "carbonaware.peeringName" . | quote }}]
  verbs: ["get", "patch"]
# Peering: kopf lists and watches the peering kind to see the other replicas' keep-alives; list
# and watch cannot be limited by name (kopf ignores other peering objects).
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
carbonaware.rbac.namespacedPeeringRules: kopf peering between replicas (replicaCount > 1,
ReleaseNamespace).
*/}}
{{- define "carbonaware.rbac.namespacedPeeringRules" -}}
# Peering: each replica writes its priority and keep-alive into the release's peering object
# (kopf), and the refresh loop reads it once per tick to act only in the active replica.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  resourceNames: [{{ include "carbonaware.peeringName" . | quote }}]
  verbs: ["get", "patch"]
# Peering: kopf lists and watches the peering kind to see the other replicas' keep-alives; list
# and watch cannot be limited by name (kopf ignores other peering objects).
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch"]
{{- end }}
