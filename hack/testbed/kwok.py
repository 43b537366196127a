"""kwok's fake nodes and the Stage configuration that makes their pods run and finish."""

from __future__ import annotations

import dataclasses
from typing import Any

from .build import KWOK_VERSION

# kwok manages only nodes carrying this annotation (it is kwok's documented convention).
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
# Pod annotations read by the pod stages below. The delay is a Go duration ("2s", "10m")
# or an RFC 3339 time; the key is the one kwok's own stage files use.
POD_COMPLETE_DELAY_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/delay"
# When present, the pod ends Failed with this exit code (e.g. "3") instead of Succeeded.
POD_EXIT_CODE_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/exit-code"
DEFAULT_POD_COMPLETE_DELAY_MS = 2000


@dataclasses.dataclass(frozen=True)
class KwokNode:
    """A fake node with the labels and capacity a cloud node of that type would carry."""

    name: str
    instance_type: str
    region: str
    zone: str
    cpu: str
    memory: str
    pods: str = "110"

    def manifest(self, kubernetes_version: str) -> dict[str, Any]:
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {
                    KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE,
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": self.instance_type,
                    "topology.kubernetes.io/region": self.region,
                    "topology.kubernetes.io/zone": self.zone,
                },
            },
            "spec": {"providerID": f"kwok://{self.name}"},
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": kubernetes_version,
                    "kubeProxyVersion": kubernetes_version,
                    "containerRuntimeVersion": f"kwok://{KWOK_VERSION}",
                    "kernelVersion": "6.1.0",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            },
        }


# London (GB grid) and Frankfurt (DE grid): the two regions the shipped traces cover.
DEFAULT_NODES: tuple[KwokNode, ...] = (
    KwokNode(
        name="kwok-aws-eu-west-2a",
        instance_type="m5.xlarge",
        region="eu-west-2",
        zone="eu-west-2a",
        cpu="4",
        memory="16Gi",
    ),
    KwokNode(
        name="kwok-gcp-europe-west3-a",
        instance_type="n2-standard-4",
        region="europe-west3",
        zone="europe-west3-a",
        cpu="4",
        memory="16Gi",
    ),
)


# kwok Stage configuration (kwok.x-k8s.io/v1alpha1): nodes become Ready and keep a
# heartbeat; pods on kwok nodes go Running; Job pods (and any pod with the delay
# annotation) end Succeeded after the delay, or Failed when the exit-code annotation is set;
# deleted pods go away at once.
_STAGES_TEMPLATE = r"""
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
      addresses:
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values: ['True']
  delay:
    durationMilliseconds: 20000
    jitterDurationMilliseconds: 25000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
  immediateNextStage: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.podIP'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: PodScheduled
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: @POD_IP@
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete-job
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values: ['Job']
    - key: '.metadata.annotations["@EXIT_CODE_ANNOTATION@"]'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: @DEFAULT_DELAY_MS@
    durationFrom:
      expressionFrom: '.metadata.annotations["@DELAY_ANNOTATION@"]'
  next:
    statusTemplate: |
      @SUCCEEDED_STATUS@
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete-annotated
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'NotIn'
      values: ['Job']
    - key: '.metadata.annotations["@DELAY_ANNOTATION@"]'
      operator: 'Exists'
    - key: '.metadata.annotations["@EXIT_CODE_ANNOTATION@"]'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: @DEFAULT_DELAY_MS@
    durationFrom:
      expressionFrom: '.metadata.annotations["@DELAY_ANNOTATION@"]'
  next:
    statusTemplate: |
      @SUCCEEDED_STATUS@
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-fail
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.annotations["@EXIT_CODE_ANNOTATION@"]'
      operator: 'Exists'
  delay:
    durationMilliseconds: @DEFAULT_DELAY_MS@
    durationFrom:
      expressionFrom: '.metadata.annotations["@DELAY_ANNOTATION@"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $started := or .status.startTime $now }}
      {{ $exitCode := index .metadata.annotations "@EXIT_CODE_ANNOTATION@" }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated:
            exitCode: {{ $exitCode }}
            finishedAt: {{ $now | Quote }}
            reason: Error
            startedAt: {{ $started | Quote }}
      {{ end }}
      phase: Failed
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    finalizers:
      empty: true
    delete: true
"""

# kwok's PodIPWith hands out an address from --cidr per pod.
_POD_IP = (
    '{{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) '
    '( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}'
)

_SUCCEEDED_STATUS = """{{ $now := Now }}
      {{ $started := or .status.startTime $now }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $started | Quote }}
      {{ end }}
      phase: Succeeded"""


def kwok_stages_yaml(default_delay_ms: int = DEFAULT_POD_COMPLETE_DELAY_MS) -> str:
    """The kwok Stage documents the plane runs with."""
    return (
        _STAGES_TEMPLATE.replace("@SUCCEEDED_STATUS@", _SUCCEEDED_STATUS)
        .replace("@POD_IP@", _POD_IP)
        .replace("@DEFAULT_DELAY_MS@", str(default_delay_ms))
        .replace("@DELAY_ANNOTATION@", POD_COMPLETE_DELAY_ANNOTATION)
        .replace("@EXIT_CODE_ANNOTATION@", POD_EXIT_CODE_ANNOTATION)
        .lstrip()
    )


# --------------------------------------------------------------------------- building
