"""Who can get at a Secret? RBAC analysis over Roles, ClusterRoles and their bindings (pure).

Only names are used; Secret values are never read. A subject gets at the AI credentials an
approved workload takes from Secret `ns/s` when it can

- **read** the Secret: get, list or watch `secrets` (resourceNames, when set, must name it; they
  restrict list and watch too, which then need a `metadata.name` field selector);
- **mount** it: create Pods in the namespace, or create, update or patch a workload there
  (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs, ReplicationControllers),
  or add an ephemeral container to a pod (`pods/ephemeralcontainers`): any pod of the namespace
  can take any of its Secrets as environment or volume;
- **exec** into the workload's pods (`create pods/exec`): the credentials are in their
  environment (a lower severity: it reaches only the running pods' copy).

Kubernetes semantics: `*` matches any group, resource or verb, `*/exec` any resource's exec
subresource; resourceNames cannot restrict create. Groups count like users:
`system:authenticated`, `system:unauthenticated`, `system:serviceaccounts` and
`system:serviceaccounts:<ns>` are everyone, anyone, or every service account (of a namespace).

Left out, because every cluster has them and they would drown the finding (the report lists the
ones it found, see `LEFT_OUT`): the control plane's own components (`system:kube-controller-manager`,
`system:kube-scheduler`, `system:kube-proxy`, `system:apiserver`), the nodes (`system:nodes`,
`system:node:*`: the kubelet reads the Secrets of the pods it runs anyway), the service accounts
of kube-system (the built-in controllers, as ServiceAccount, `system:serviceaccount:kube-system:*`
or the `system:serviceaccounts:kube-system` group), and cluster admins (`system:masters`, and the
subjects of ClusterRoleBindings to `cluster-admin`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

READ_VERBS = ("get", "list", "watch")
# (API group, resource, verbs) that let a subject start a pod of its own design in the namespace
MOUNT_GRANTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "pods", ("create",)),
    ("", "pods/ephemeralcontainers", ("update", "patch")),
    ("", "replicationcontrollers", ("create", "update", "patch")),
    *(
        ("apps", r, ("create", "update", "patch"))
        for r in ("deployments", "replicasets", "statefulsets", "daemonsets")
    ),
    *(("batch", r, ("create", "update", "patch")) for r in ("jobs", "cronjobs")),
)
CONTROL_PLANE_USERS = frozenset(
    {"system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy", "system:apiserver"}
)
CLUSTER_ADMIN_ROLE = "cluster-admin"
ANYONE = frozenset({"system:unauthenticated", "system:authenticated"})

# why a subject is left out of credential-exposure (keys are what LeftOut.reason holds)
LEFT_OUT = {
    "control-plane": "the control plane's own components",
    "nodes": "nodes (the kubelet reads the Secrets of the pods it runs)",
    "kube-system": "service accounts of kube-system (the built-in controllers)",
    "cluster-admin": "cluster admins (system:masters, ClusterRoleBindings to cluster-admin)",
}


@dataclass(frozen=True, order=True)
class Subject:
    kind: str  # User | Group | ServiceAccount
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"

    @classmethod
    def of(cls, subject: Mapping[str, Any], binding_namespace: str) -> Subject:
        """A binding's subject; a User `system:serviceaccount:<ns>:<name>` is that ServiceAccount."""
        kind, name = str(subject.get("kind")), str(subject.get("name"))
        if kind == "ServiceAccount":
            return cls(kind, name, str(subject.get("namespace") or binding_namespace))
        if kind == "User" and name.startswith("system:serviceaccount:") and name.count(":") == 3:
            _, _, ns, sa = name.split(":")
            return cls("ServiceAccount", sa, ns)
        return cls(kind, name)

    @property
    def severity(self) -> str:
        """Severity of a finding for a subject that can read or mount the Secret."""
        if (self.kind == "Group" and self.name in ANYONE) or self == Subject("User", "system:anonymous"):
            return "critical"
        return "medium" if self.kind == "ServiceAccount" else "high"


def _left_out(s: Subject) -> str | None:
    if s.kind == "User" and s.name in CONTROL_PLANE_USERS:
        return "control-plane"
    if (s.kind == "Group" and s.name == "system:nodes") or (
        s.kind == "User" and s.name.startswith("system:node:")
    ):
        return "nodes"
    if (s.kind == "ServiceAccount" and s.namespace == "kube-system") or (
        s.kind == "Group" and s.name == "system:serviceaccounts:kube-system"
    ):
        return "kube-system"
    if s.kind == "Group" and s.name == "system:masters":
        return "cluster-admin"
    return None


def rule_allows(
    rule: Mapping[str, Any], group: str, resource: str, verb: str, name: str | None = None
) -> bool:
    """Kubernetes RBAC's match of one PolicyRule against one resource request.

    `resource` may name a subresource (`pods/exec`); `name` is the object's name (None for a
    create, which resourceNames cannot restrict)."""
    groups = rule.get("apiGroups") or []
    if "*" not in groups and group not in groups:
        return False
    verbs = rule.get("verbs") or []
    if "*" not in verbs and verb not in verbs:
        return False
    sub = resource.partition("/")[2]
    resources = rule.get("resources") or []
    if not any(r == "*" or r == resource or (sub and r == f"*/{sub}") for r in resources):
        return False
    names = rule.get("resourceNames") or []
    return not names or (name is not None and name in names)


def _named(rule: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(n) for n in rule.get("resourceNames") or [])


@dataclass
class Grants:
    """What one subject may do in one namespace, and through which bindings."""

    read_all: list[str] = field(default_factory=list)  # every Secret of the namespace
    read_named: dict[str, list[str]] = field(default_factory=dict)  # Secret name -> bindings
    mount: list[str] = field(default_factory=list)
    exec_all: list[str] = field(default_factory=list)
    exec_named: dict[str, list[str]] = field(default_factory=dict)  # pod name -> bindings


@dataclass(frozen=True)
class Caps:
    """What a role's rules allow that reaches the Secrets of a namespace."""

    read_all: bool = False  # every Secret
    read_named: frozenset[str] = frozenset()  # the Secrets of these names
    mount: bool = False
    exec_all: bool = False
    exec_named: frozenset[str] = frozenset()  # exec into the pods of these names

    def __bool__(self) -> bool:
        return self.read_all or bool(self.read_named) or self.mount or self.exec_all or bool(self.exec_named)


def caps(rules: Iterable[Mapping[str, Any]]) -> Caps:
    read_all = mount = exec_all = False
    read_named: set[str] = set()
    exec_named: set[str] = set()
    for rule in rules:
        names = _named(rule)
        read_all = read_all or any(rule_allows(rule, "", "secrets", v) for v in READ_VERBS)
        read_named.update(n for n in names if any(rule_allows(rule, "", "secrets", v, n) for v in READ_VERBS))
        # a create has no name yet (resourceNames cannot restrict it); an update or patch of a named
        # workload changes that workload's pod template
        mount = mount or any(
            rule_allows(rule, group, res, verb)
            or (verb != "create" and any(rule_allows(rule, group, res, verb, n) for n in names))
            for group, res, verbs in MOUNT_GRANTS
            for verb in verbs
        )
        exec_all = exec_all or rule_allows(rule, "", "pods/exec", "create")
        exec_named.update(n for n in names if rule_allows(rule, "", "pods/exec", "create", n))
    return Caps(read_all, frozenset(read_named), mount, exec_all, frozenset(exec_named))


def _dedup(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Exposure:
    """How one subject gets at the credentials of one workload, and through which bindings."""

    subject: Subject
    secrets: tuple[str, ...]  # the Secrets it can read
    read: tuple[str, ...]  # bindings that let it read them
    mount: tuple[str, ...]  # bindings that let it start pods of its own (any Secret)
    exec: tuple[str, ...]  # bindings that let it exec into the workload's pods

    @property
    def severity(self) -> str:
        full = self.subject.severity
        if self.secrets or self.mount:
            return full
        return {"critical": "high", "high": "medium"}.get(full, "low")  # exec only: one lower

    def describe(self, namespace: str) -> str:
        means = []
        if self.secrets:
            secrets = ", ".join(f"Secret {namespace}/{s}" for s in self.secrets)
            means.append(f"can read {secrets} ({'; '.join(self.read)})")
        if self.mount:
            means.append(
                "can start pods that mount any Secret of the namespace (create pods or workloads: "
                f"{'; '.join(self.mount)})"
            )
        if self.exec:
            means.append(f"can exec into the workload's pods ({'; '.join(self.exec)})")
        return f"{self.subject} " + ", and ".join(means)


@dataclass(frozen=True, order=True)
class LeftOut:
    """A subject that could get at an approved workload's credentials but is left out by design."""

    reason: str  # a key of LEFT_OUT
    subject: Subject


def _pod_named(names: Iterable[str], workload: str, kind: str) -> list[str]:
    """The resourceNames that name a pod of the workload (the Pod itself; a controller's pods
    are called `<name>-...`)."""
    return [n for n in names if n == workload or (kind != "Pod" and n.startswith(f"{workload}-"))]


@dataclass
class RbacIndex:
    roles: dict[tuple[str, str], list[Mapping[str, Any]]]  # (namespace, name) -> rules
    cluster_roles: dict[str, list[Mapping[str, Any]]]
    role_bindings: list[Mapping[str, Any]]
    cluster_role_bindings: list[Mapping[str, Any]]
    _by_ns: dict[str, dict[Subject, Grants]] = field(default_factory=dict, init=False, repr=False)
    _admins: set[Subject] | None = field(default=None, init=False, repr=False)
    _caps: dict[tuple[str, str], Caps] = field(default_factory=dict, init=False, repr=False)

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

    def _role_caps(self, ref: Mapping[str, Any], namespace: str) -> Caps:
        """The capabilities of a binding's role (a Role of `namespace`, or a ClusterRole), computed
        once per role: ClusterRoles are bound in many namespaces."""
        cluster = ref.get("kind") == "ClusterRole"
        key = ("", str(ref.get("name"))) if cluster else (namespace, str(ref.get("name")))
        if key not in self._caps:
            rules = self.cluster_roles.get(key[1], []) if cluster else self.roles.get(key, [])
            self._caps[key] = caps(rules)
        return self._caps[key]

    def cluster_admins(self) -> set[Subject]:
        """Subjects of ClusterRoleBindings to cluster-admin."""
        if self._admins is None:
            self._admins = {
                Subject.of(s, "")
                for b in self.cluster_role_bindings
                if (b.get("roleRef") or {}).get("kind") == "ClusterRole"
                and (b.get("roleRef") or {}).get("name") == CLUSTER_ADMIN_ROLE
                for s in b.get("subjects") or []
            }
        return self._admins

    def left_out_reason(self, subject: Subject) -> str | None:
        reason = _left_out(subject)
        if reason is None and subject in self.cluster_admins():
            return "cluster-admin"
        return reason

    def grants(self, namespace: str) -> dict[Subject, Grants]:
        """Every subject's grants in `namespace` (RoleBindings there and ClusterRoleBindings),
        computed once per namespace."""
        if namespace in self._by_ns:
            return self._by_ns[namespace]
        out: dict[Subject, Grants] = {}
        bindings = [
            (b, namespace, "RoleBinding")
            for b in self.role_bindings
            if b["metadata"].get("namespace") == namespace
        ]
        bindings += [(b, "", "ClusterRoleBinding") for b in self.cluster_role_bindings]
        for binding, ns, kind in bindings:
            ref = binding.get("roleRef") or {}
            role = self._role_caps(ref, ns)
            if not role:
                continue
            name = binding["metadata"].get("name")
            via = f"{kind} {ns + '/' if ns else ''}{name} ({ref.get('kind')} {ref.get('name')})"
            for s in binding.get("subjects") or []:
                g = out.setdefault(Subject.of(s, ns), Grants())
                if role.read_all:
                    g.read_all.append(via)
                if role.mount:
                    g.mount.append(via)
                if role.exec_all:
                    g.exec_all.append(via)
                for n in role.read_named:
                    g.read_named.setdefault(n, []).append(via)
                for n in role.exec_named:
                    g.exec_named.setdefault(n, []).append(via)
        self._by_ns[namespace] = out
        return out

    def exposures(
        self, namespace: str, secrets: Iterable[str], workload: str, kind: str
    ) -> tuple[list[Exposure], list[LeftOut]]:
        """Who can get at Secrets `secrets` of `namespace`, from which workload `kind/workload`
        takes its AI credentials: the exposures (sorted by subject) and the subjects left out."""
        wanted = sorted(set(secrets))
        if not wanted:
            return [], []
        found: list[Exposure] = []
        left: list[LeftOut] = []
        for subject, g in sorted(self.grants(namespace).items()):
            readable = tuple(s for s in wanted if g.read_all or s in g.read_named)
            read_via = _dedup([*g.read_all, *(v for s in readable for v in g.read_named.get(s, ()))])
            exec_via = [
                *g.exec_all,
                *(v for n in _pod_named(g.exec_named, workload, kind) for v in g.exec_named[n]),
            ]
            if not (readable or g.mount or exec_via):
                continue
            reason = self.left_out_reason(subject)
            if reason is not None:
                left.append(LeftOut(reason, subject))
                continue
            found.append(
                Exposure(subject, readable, tuple(read_via), tuple(_dedup(g.mount)), tuple(_dedup(exec_via)))
            )
        return found, left
