"""The `vap` admission engine: contract sections 3 and 7 as ValidatingAdmissionPolicy objects
(CEL evaluated inside kube-apiserver), rendered without a cluster by `aidp.vap.render`: one module
a concern, as Gatekeeper's drivers: `cel` (the shared building blocks), `labels`, `workloads`
(section 3), `guardrails` and `unapproved` (section 6), and `policies`, which puts them together."""

from aidp.vap.cel import ENGINE_LABEL
from aidp.vap.policies import POLICY_NAMES, render
from aidp.vap.workloads import MODES

__all__ = ["ENGINE_LABEL", "MODES", "POLICY_NAMES", "render"]
