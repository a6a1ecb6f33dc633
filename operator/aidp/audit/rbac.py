"""Who can read a Secret? RBAC analysis over Roles, ClusterRoles and their bindings (pure).

Only names are used; Secret values are never read. Built-in system identities (`system:` users,
groups and the kube-system service accounts) are left out of findings: every cluster has them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

READ_VERBS = {"get", "list", "watch", "*"}


@dataclass(frozen=True, order=True)
class Subject:
    kind: str  # User | Group | ServiceAccount
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"

    @property
    def builtin(self) -> bool:
        return self.name.startswith("system:") or (
            self.kind == "ServiceAccount" and self.namespace == "kube-system"
        )


def _rules_read_secret(rules: Iterable[Mapping[str, Any]], secret: str) -> bool:
    for rule in rules or []:
        groups = rule.get("apiGroups") or []
        resources = rule.get("resources") or []
        verbs = set(rule.get("verbs") or [])
        names = rule.get("resourceNames") or []
        reads = (
            ("" in groups or "*" in groups)
            and ("secrets" in resources or "*" in resources)
            and verbs & READ_VERBS
        )
        # list/watch cannot be restricted by resourceNames: they expose every Secret
        if reads and (not names or secret in names or verbs & {"list", "watch", "*"}):
            return True
    return False


@dataclass
class RbacIndex:
    roles: dict[tuple[str, str], list[Mapping[str, Any]]]  # (namespace, name) -> rules
    cluster_roles: dict[str, list[Mapping[str, Any]]]
    role_bindings: list[Mapping[str, Any]]
    cluster_role_bindings: list[Mapping[str, Any]]

    @classmethod
    def build(
        cls,
        roles: Iterable[Mapping[str, Any]],
        cluster_roles: Iterable[Mapping[str, Any]],
        role_bindings: Iterable[Mapping[str, Any]],
        cluster_role_bindings: Iterable[Mapping[str, Any]],
    ) -> RbacIndex:
        return cls(
            {(r["metadata"]["namespace"], r["metadata"]["name"]): list(r.get("rules") or []) for r in roles},
            {r["metadata"]["name"]: list(r.get("rules") or []) for r in cluster_roles},
            list(role_bindings),
            list(cluster_role_bindings),
        )

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> list[Mapping[str, Any]]:
        if ref.get("kind") == "ClusterRole":
            return self.cluster_roles.get(str(ref.get("name")), [])
        return self.roles.get((namespace, str(ref.get("name"))), [])

    def readers(self, namespace: str, secret: str) -> set[Subject]:
        """Every subject that can get, list or watch Secret `namespace/secret`."""
        out: set[Subject] = set()
        bindings = [(b, namespace) for b in self.role_bindings if b["metadata"].get("namespace") == namespace]
        bindings += [(b, "") for b in self.cluster_role_bindings]
        for binding, ns in bindings:
            if not _rules_read_secret(self._role_rules(binding.get("roleRef") or {}, ns), secret):
                continue
            for s in binding.get("subjects") or []:
                kind = str(s.get("kind"))
                sa_ns = str(s.get("namespace") or ns) if kind == "ServiceAccount" else ""
                out.add(Subject(kind, str(s.get("name")), sa_ns))
        return out
