"""Label-selector semantics: the one Python implementation (policies, workload counts, the audit).

Two readings of an empty selector exist and both are here, named:
- `LabelSelector.matches`: an AIDataPolicy's workloadSelector; an empty selector matches NOTHING
  (the CRD refuses one, and a policy must never select every pod by accident);
- `selects`: Kubernetes' own reading, for objects aidp did not write (a NetworkPolicy's
  podSelector); an empty or missing selector selects EVERY pod.

The admission Rego (policies/aidp/admission.rego) evaluates workloadSelectors itself, in OPA.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

SELECTOR_OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, slots=True)
class LabelSelectorRequirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "operator": self.operator, "values": list(self.values)}


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A metav1.LabelSelector. Unlike Kubernetes, an empty selector matches nothing."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        # plain loops: the audit calls this for every workload and every policy of its namespace
        if not self.match_labels and not self.match_expressions:
            return False
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)

    @classmethod
    def from_dict(cls, selector: Mapping[str, Any]) -> LabelSelector:
        """Leniently from a Kubernetes object already accepted by the API server (e.g. a
        NetworkPolicy's podSelector); unknown shapes match nothing."""
        labels = selector.get("matchLabels") or {}
        exprs = selector.get("matchExpressions") or []
        return cls(
            tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, Mapping) else (),
            tuple(
                LabelSelectorRequirement(
                    str(e.get("key")), str(e.get("operator")), tuple(map(str, e.get("values") or ()))
                )
                for e in exprs
                if isinstance(e, Mapping)
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The selector as a Kubernetes object (both keys always present; what the Rego receives)."""
        return {
            "matchLabels": dict(self.match_labels),
            "matchExpressions": [r.to_dict() for r in self.match_expressions],
        }


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes semantics, for a selector of an object aidp did not write (a NetworkPolicy's
    podSelector): a missing or empty selector (`{}`) selects every pod."""
    if not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions")):
        return True
    return LabelSelector.from_dict(selector).matches(labels)
