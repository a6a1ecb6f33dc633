"""The `vap` admission engine: contract sections 3 and 7 as ValidatingAdmissionPolicy objects
(CEL evaluated inside kube-apiserver), rendered without a cluster by `aidp.vap.render`."""

from aidp.vap.policies import ENGINE_LABEL, MODES, POLICY_NAMES, render

__all__ = ["ENGINE_LABEL", "MODES", "POLICY_NAMES", "render"]
